"""service/contract/routing.py: every operation of the contract is routed by its own pattern,
whatever the method and wherever it stands among its path's operations; what only Starlette's
router can answer (a method the path does not declare, a path that is not the contract's) still
comes from that router, the same as without the fast routing."""

import pytest
from connexion import AsyncApp
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.resolver import Resolver
from starlette.testclient import TestClient

from service import contract
from tests.contract.conftest import DOCUMENT, HANDLERS

EVERY_OPERATION = [
    ("GET", "/things?limit=3"),
    ("POST", "/things"),  # the second operation of its path
    ("GET", "/things/special"),
    ("GET", "/things/7"),
    ("PUT", "/things/7"),  # the second operation of its path
]
ONLY_THE_ROUTER = [("DELETE", "/things/7"), ("PATCH", "/things"), ("GET", "/nowhere"), ("GET", "/things/7/more")]


def app_routed(*, by_contract: bool) -> AsyncApp:
    contract.install()
    middlewares = contract.one_pass_stack(list(ConnexionMiddleware.default_middlewares), validate_responses=False)
    app = AsyncApp(
        __name__, middlewares=middlewares, validator_map=contract.VALIDATOR_MAP, uri_parser_class=contract.URIParser
    )
    app.add_api(DOCUMENT, resolver=Resolver(HANDLERS.__getitem__))
    if by_contract:
        contract.route_by_contract(app.middleware)
    return app


@pytest.fixture(scope="module")
def clients():
    with (
        TestClient(app_routed(by_contract=True), raise_server_exceptions=False) as fast,
        TestClient(app_routed(by_contract=False), raise_server_exceptions=False) as stock,
    ):
        yield fast, stock


@pytest.fixture
def router_calls(monkeypatch) -> list[str]:
    """The paths that reached Starlette's router through Connexion's routing middleware."""
    calls = []
    router_call = RoutingMiddleware.__call__

    async def counted(self, scope, receive, send):
        if scope["type"] == "http":
            calls.append(scope["path"])
        await router_call(self, scope, receive, send)

    monkeypatch.setattr(RoutingMiddleware, "__call__", counted)
    return calls


def send(client: TestClient, method: str, url: str):
    body = {"id": "2b4f1c5e-8e4b-4d1a-9a57-3c2e8e1f0a11"} if method == "POST" else None
    return client.request(method, url, json=body)


@pytest.mark.parametrize(("method", "url"), EVERY_OPERATION)
def test_every_operation_is_routed_by_the_contract_and_answers_as_the_router_would(clients, router_calls, method, url):
    fast, stock = clients
    answer = send(fast, method, url)
    assert router_calls == []
    assert answer.status_code < 300, answer.text
    expected = send(stock, method, url)
    assert (answer.status_code, answer.json()) == (expected.status_code, expected.json())


@pytest.mark.parametrize(("method", "url"), ONLY_THE_ROUTER)
def test_what_no_operation_takes_is_left_to_the_router(clients, router_calls, method, url):
    fast, stock = clients
    answer = send(fast, method, url)
    assert router_calls == [url.split("?")[0]]
    assert answer.status_code in (404, 405)
    expected = send(stock, method, url)
    assert (answer.status_code, answer.content) == (expected.status_code, expected.content)
