"""The adapter on a small 3.1 document of its own, so that a Connexion upgrade that breaks any
adapter fails here, by name, before it fails anywhere else."""

import pytest
from connexion import AsyncApp
from connexion.middleware import MiddlewarePosition
from connexion.resolver import Resolver
from starlette.testclient import TestClient

from service import contract
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
        },
        "/things/special": {
            "get": {
                "operationId": "special_thing",
                "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {}}}}},
            }
        },
        "/things/{thing_id}": {
            "parameters": [{"name": "thing_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {
                "operationId": "get_thing",
                "responses": {
                    "200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "400": {"description": "bad", "content": PROBLEM},
                },
            },
            "put": {
                "operationId": "put_thing",
                "responses": {
                    "200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "400": {"description": "bad", "content": PROBLEM},
                },
            },
        },
    },
}


async def list_things(limit=None, since=None):
    return {"limit": limit, "limit_type": type(limit).__name__}


async def make_thing(body):
    return body, 201


async def special_thing():
    return {"special": True}


async def get_thing(thing_id):
    return {"thing_id": thing_id}


put_thing = get_thing


HANDLERS = {
    "list_things": list_things,
    "make_thing": make_thing,
    "special_thing": special_thing,
    "get_thing": get_thing,
    "put_thing": put_thing,
}


@pytest.fixture(scope="module")
def adapter_client():
    contract.install()
    app = AsyncApp(__name__, validator_map=contract.VALIDATOR_MAP, uri_parser_class=contract.URIParser)
    app.add_api(DOCUMENT, resolver=Resolver(HANDLERS.__getitem__), validate_responses=True)
    register_error_handlers(app, DOCUMENT)
    app.add_middleware(contract.CaseInsensitiveMediaTypes, position=MiddlewarePosition.BEFORE_ROUTING)
    app.add_middleware(contract.ConcretePathsFirst, position=MiddlewarePosition.BEFORE_ROUTING, document=DOCUMENT)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
