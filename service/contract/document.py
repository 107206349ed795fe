"""The contract document: read as written, and checked as OpenAPI 3.1.

Connexion checks every document against its bundled 3.0 schema and rejects ``openapi: 3.1.x``
(spec-first/connexion#1396): the check goes to openapi-spec-validator instead.
"""

from pathlib import Path

import yaml
from connexion.exceptions import InvalidSpecification
from openapi_spec_validator import validate as validate_openapi_document
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError


def load_document(path: Path) -> dict:
    """The contract as written; Connexion gets this dict, readers get the file itself."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def validate_as_3_1(cls, spec: dict) -> None:
    """`OpenAPISpecification._validate_spec`, for 3.1 documents."""
    try:
        validate_openapi_document(spec)
    except OpenAPIValidationError as error:
        raise InvalidSpecification(str(error)) from error
