"""The contract (OpenAPI 3.1) served by Connexion 3.3: what the framework lacks, one module per
concern, each pinned by its tests in ``tests/contract/`` so that an upgrade which breaks one
fails loudly, by name.

- ``document``: the contract loaded as written and checked as 3.1 (Connexion knows 3.0 only).
- ``validation``: Draft 2020-12 for requests and responses, every violation listed, bounded.
- ``parameters``: type arrays (``[integer, "null"]``) coerced from the query string.
- ``one_pass``: security, validation and the handler call in one pass per request, planned once
  per operation, in place of Connexion's routed layers (``one_pass_stack``); ``request``, the
  handlers' ``connexion.request``.
- ``compiled``: the accept path, a compiled validator (jsonschema-rs) that agrees with ``validation``.
- ``pipeline``: what Connexion's stock path rebuilds per request, built once per operation.
- ``media_types``: case-insensitive media types, the success type of returned data.
- ``paths``: concrete paths before templated ones.
- ``routing``: a request for one of the operations routed by its pattern, not Starlette's router.

Written for Connexion ``WRITTEN_FOR``, the one place its version is pinned in code.
"""

import connexion
from connexion import security as connexion_security
from connexion.apps.asynchronous import AsyncOperation
from connexion.decorators import parameter as connexion_parameters
from connexion.decorators.response import BaseResponseDecorator
from connexion.lifecycle import ConnexionRequest
from connexion.spec import OpenAPISpecification

from service.contract import document, media_types, one_pass, parameters, pipeline, validation
from service.contract.document import load_document
from service.contract.media_types import CaseInsensitiveMediaTypes
from service.contract.one_pass import OnePass, one_pass_stack, request
from service.contract.parameters import URIParser
from service.contract.paths import ConcretePathsFirst, NoSlashRedirects
from service.contract.routing import route_by_contract
from service.contract.validation import VALIDATOR_MAP

WRITTEN_FOR = "3.3.0"

__all__ = [
    "VALIDATOR_MAP",
    "WRITTEN_FOR",
    "CaseInsensitiveMediaTypes",
    "ConcretePathsFirst",
    "NoSlashRedirects",
    "OnePass",
    "URIParser",
    "install",
    "load_document",
    "one_pass_stack",
    "request",
    "route_by_contract",
]


def install(*, max_json_depth: int = validation.RequestBodyValidator.max_depth) -> None:
    """Teach Connexion the 3.1 document check, type-array casting, the response media type,
    the nesting limit of bodies and per-operation caching (add CaseInsensitiveMediaTypes,
    ConcretePathsFirst and NoSlashRedirects as middlewares, VALIDATOR_MAP and URIParser to the app, too)."""
    validation.RequestBodyValidator.max_depth = max_json_depth
    OpenAPISpecification._validate_spec = classmethod(document.validate_as_3_1)
    connexion_parameters._get_val_from_param = parameters.get_val_from_param
    BaseResponseDecorator._infer_content_type = staticmethod(media_types.infer_content_type)
    AsyncOperation.fn = pipeline.operation_fn
    pipeline.operation_fn.__set_name__(AsyncOperation, "fn")
    ConnexionRequest.files = media_types.files_of_forms_only
    ConnexionRequest.json = pipeline.json_by_orjson
    connexion_parameters.inspect_function_arguments = pipeline.inspect_function_arguments
    connexion_parameters.get_arguments = pipeline.get_arguments
    connexion_parameters.sanitized = pipeline.sanitized
    connexion_security.inspect_function_arguments = pipeline.inspect_function_arguments
    object.__setattr__(connexion.request, "_get_current_object", one_pass.current_request)  # werkzeug's LocalProxy
