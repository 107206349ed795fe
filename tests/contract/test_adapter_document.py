"""service/contract/document.py and the version pin: a 3.1 document loads and is checked as 3.1."""

import copy
from importlib.metadata import version

import pytest
from connexion import AsyncApp
from connexion.exceptions import InvalidSpecification
from openapi_spec_validator import validate

from app import SPEC_PATH
from service import contract
from tests.contract.conftest import DOCUMENT


def test_written_for_the_pinned_connexion():
    assert version("connexion") == contract.WRITTEN_FOR, (
        "Connexion changed: re-check each adapter in service/contract/ against it, then update WRITTEN_FOR"
    )


def test_the_tasks_contract_is_3_1_and_valid():
    document = contract.load_document(SPEC_PATH)
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_a_3_1_document_loads(adapter_client):
    assert adapter_client.get("/things").status_code == 200


def test_a_document_that_breaks_3_1_is_refused_at_start():
    contract.install()
    broken = copy.deepcopy(DOCUMENT)
    del broken["paths"]["/things"]["get"]["responses"]["200"]["description"]
    with pytest.raises(InvalidSpecification, match="description"):
        AsyncApp(__name__).add_api(broken)
