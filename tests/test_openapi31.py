"""openapi31.py on a small 3.1 document of its own, so that a Connexion upgrade that breaks
any adapter fails here, by name, before it fails anywhere else."""

from importlib.metadata import version

import pytest
from connexion import AsyncApp
from connexion.decorators.main import StarletteDecorator
from connexion.resolver import Resolver
from starlette.testclient import TestClient

from app import SPEC_PATH
from service import openapi31
from service.errors import register as register_error_handlers

PROBLEM = {"application/problem+json": {"schema": {"type": "object"}}}
DOCUMENT = {
    "openapi": "3.1.0",
    "info": {"title": "adapter check", "version": "1"},
    "paths": {
        "/things": {
            "get": {
                "operationId": "list_things",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": ["integer", "null"], "maximum": 10}},
                    {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                ],
                "responses": {
                    "200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "400": {"description": "bad", "content": PROBLEM},
                },
            },
            "post": {
                "operationId": "make_thing",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["id"],
                                "properties": {
                                    "id": {"type": "string", "format": "uuid"},
                                    "note": {"type": ["string", "null"], "maxLength": 3},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": {"description": "made", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "400": {"description": "bad", "content": PROBLEM},
                },
            },
        }
    },
}


async def list_things(limit=None, since=None):
    return {"limit": limit, "limit_type": type(limit).__name__}


async def make_thing(body):
    return body, 201


@pytest.fixture(scope="module")
def client():
    openapi31.install()
    app = AsyncApp(__name__, validator_map=openapi31.VALIDATOR_MAP, uri_parser_class=openapi31.URIParser)
    app.add_api(DOCUMENT, resolver=Resolver(lambda name: globals()[name]), validate_responses=True)
    register_error_handlers(app, DOCUMENT)
    with TestClient(app) as test_client:
        yield test_client


def test_written_for_the_pinned_connexion():
    assert version("connexion") == openapi31.WRITTEN_FOR, (
        "Connexion changed: re-check every adapter in openapi31.py against the new version, then update WRITTEN_FOR"
    )


def test_the_tasks_contract_is_3_1_and_valid():
    document = openapi31.load_document(SPEC_PATH)
    assert document["openapi"].startswith("3.1.")
    from openapi_spec_validator import validate

    validate(document)


def test_a_3_1_document_loads(client):
    assert client.get("/things").status_code == 200


def test_a_type_array_parameter_is_coerced_from_the_query_string(client):
    assert client.get("/things", params={"limit": "7"}).json() == {"limit": 7, "limit_type": "int"}


def test_a_type_array_parameter_is_still_validated(client):
    response = client.get("/things", params={"limit": "11"})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"in": "query", "name": "limit", "message": "11 is greater than the maximum of 10"}
    ]


def test_date_time_format_is_enforced_on_parameters(client):
    assert client.get("/things", params={"since": "yesterday"}).status_code == 400
    assert client.get("/things", params={"since": "2026-11-22T10:00:00Z"}).status_code == 200


def test_uuid_format_and_type_arrays_are_enforced_in_bodies(client):
    ok = client.post("/things", json={"id": "0b6f5c1e-6c1a-4a53-9f3e-7d2a2f1c9b10", "note": None})
    assert ok.status_code == 201
    assert ok.headers["content-type"] == "application/json", "the one success type, not problem+json or a 500"
    bad = client.post("/things", json={"id": "not-a-uuid", "note": "toolong"})
    assert bad.status_code == 400
    assert {error["pointer"] for error in bad.json()["errors"]} == {"/id", "/note"}


def test_a_body_that_is_not_utf8_is_400_not_500(client):
    response = client.post("/things", content=b"\xc3\x28", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_responses_are_validated_with_draft_2020_12():
    validator = openapi31.ResponseBodyValidator(
        {}, schema={"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}}, encoding="utf-8"
    )
    validator._validate({"id": "0b6f5c1e-6c1a-4a53-9f3e-7d2a2f1c9b10"})
    with pytest.raises(Exception, match="is not a 'uuid'"):
        validator._validate({"id": "nope"})


def test_an_operations_decorators_are_built_on_its_first_request_only(client, monkeypatch):
    """Connexion rebuilt them, and inspected the handler's signature, on every request."""
    built, inspected = [], []
    decorate = StarletteDecorator.decorate
    monkeypatch.setattr(StarletteDecorator, "decorate", lambda self, f: built.append(f) or decorate(self, f))
    monkeypatch.setattr("inspect.signature", lambda *a, **k: inspected.append(a))
    client.post("/things", json={"id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"})  # perhaps its first request
    built.clear()
    for limit in range(5):
        assert client.get("/things", params={"limit": limit}).json() == {"limit": limit, "limit_type": "int"}
        assert client.post("/things", json={"id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"}).status_code == 201
    assert len(built) <= 1 and inspected == []  # list_things' one build, if this was its first request
