"""service/contract/one_pass.py: the one-pass path answers what Connexion's stock path answers.

The same requests go to the Tasks API built both ways, over the same database: status, headers
and body must be the same, byte for byte once the values that differ by nature (ids, ETags,
times, request ids) are masked. Then, on the adapter's small document, many generated query
strings and bodies go through both."""

import inspect
import json
import re
import uuid

import connexion
import pytest
from connexion import AsyncApp
from connexion.resolver import Resolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from app import MIDDLEWARES, create_app
from service import contract
from service.errors import register as register_error_handlers
from tests.contract.conftest import DOCUMENT, HANDLERS

VOLATILE = re.compile(
    rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # ids
    rb"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"  # times
    rb'|\\"\d+\\"'  # ETags (revisions), as JSON strings
    rb"|[0-9a-f]{32}"  # request ids
)
NOT_COMPARED = {"x-request-id", "date", "etag", "location", "x-ratelimit-reset"}


def answer(response) -> tuple:
    headers = sorted(
        (name, VOLATILE.sub(b"*", value.encode()))
        for name, value in response.headers.items()
        if name not in NOT_COMPARED
    )
    return response.status_code, headers, VOLATILE.sub(b"*", response.content)


@pytest.fixture(scope="module")
def both(settings):
    with (
        TestClient(create_app(settings), raise_server_exceptions=False) as one_pass,
        TestClient(create_app(settings, one_pass=False), raise_server_exceptions=False) as stock,
    ):
        yield one_pass, stock


def requests_of(user_id: str, task_id: str, token: str, other_token: str) -> list[tuple[str, str, dict, object]]:
    """(method, url, headers, body) for every operation, valid and not, as a client may send them."""
    auth = {"Authorization": f"Bearer {token}"}
    base = f"/api/{user_id}/tasks"
    task = f"{base}/{task_id}"
    json_type = {**auth, "Content-Type": "application/json"}
    return [
        ("GET", base, auth, None),
        ("GET", f"{base}?status=pending&sort=due_at&order=asc&limit=5&priority=high&tag=home", auth, None),
        ("GET", f"{base}?limit=0", auth, None),
        ("GET", f"{base}?limit=abc&status=nope", auth, None),
        ("GET", f"{base}?limit=5&limit=7", auth, None),
        ("GET", f"{base}?unknown=1&also=2", auth, None),
        ("GET", f"{base}?due_before=yesterday", auth, None),
        ("GET", f"{base}?cursor=not-a-cursor", auth, None),
        ("GET", base, {}, None),
        ("GET", base, {"Authorization": "Bearer nonsense"}, None),
        ("GET", base, {"Authorization": f"Bearer {other_token}"}, None),
        ("GET", base, {"Authorization": "Basic abc"}, None),
        ("GET", base, {"Authorization": "Bearer"}, None),
        ("GET", base, {"Authorization": ""}, None),
        ("GET", base, {"Authorization": f"bearer   {token}"}, None),
        ("GET", base, {"Authorization": f"BEARER {token} trailing"}, None),
        ("GET", "/api/not%20an%20id/tasks", auth, None),
        ("GET", f"/api/{user_id}%0A/tasks", auth, None),
        ("GET", f"{base}%0A", auth, None),
        ("GET", task, auth, None),
        ("GET", task, {**auth, "If-None-Match": '"nope"'}, None),
        ("GET", f"{base}/{uuid.uuid4()}", auth, None),
        ("GET", f"{base}/not-a-uuid", auth, None),
        ("POST", base, json_type, b'{"title": "same", "priority": "high", "tags": ["a", "b"]}'),
        ("POST", base, json_type, b'{"title": "", "priority": "urgent", "tags": ["a", "a"], "extra": 1}'),
        ("POST", base, json_type, b'{"title": "x", "due_at": "2026-11-22T23:59:60Z"}'),
        ("POST", base, json_type, b'{"title": "x", "due_at": "2026-02-30T10:00:00Z"}'),
        ("POST", base, json_type, b"[" * 40 + b"]" * 40),
        ("POST", base, json_type, b"{not json"),
        ("POST", base, json_type, b"\xc3\x28"),
        ("POST", base, json_type, b""),
        ("POST", base, json_type, b"null"),
        ("POST", base, {**auth, "Content-Type": "APPLICATION/JSON"}, b'{"title": "shouted"}'),
        (
            "POST",
            base,
            {**auth, "Content-Type": "application/json; charset=latin-1"},
            '{"title": "é"}'.encode("latin-1"),
        ),
        ("POST", base, {**auth, "Content-Type": "text/plain"}, b'{"title": "text"}'),
        ("POST", base, {**json_type, "Idempotency-Key": ""}, b'{"title": "once"}'),
        ("PATCH", task, json_type, b'{"priority": "low"}'),
        ("PATCH", task, {**json_type, "If-Match": '"stale"'}, b'{"priority": "low"}'),
        ("PATCH", task, json_type, b'{"title": null}'),
        ("PUT", task, json_type, b'{"title": "replaced"}'),
        ("PUT", task, json_type, b"{}"),
        ("PATCH", f"{task}/complete", json_type, b'{"completed": true}'),
        ("PATCH", f"{task}/complete", json_type, b'{"completed": "yes"}'),
        ("DELETE", f"{base}/{uuid.uuid4()}", auth, None),
        ("GET", f"{base}/changes", auth, None),
        ("GET", f"{base}/changes?since=garbage&limit=-1", auth, None),
        ("PUT", f"{base}/changes", json_type, b"{}"),
        ("DELETE", base, auth, None),
        ("GET", "/health", {}, None),
        ("GET", "/nowhere", {}, None),
    ]


def test_every_operation_answers_the_same_through_both_paths(both, tokens):
    one_pass, stock = both
    user_id = f"same_{uuid.uuid4().hex[:10]}"
    token = tokens.mint(user_id)
    made = one_pass.post(f"/api/{user_id}/tasks", json={"title": "seed"}, headers={"Authorization": f"Bearer {token}"})
    task_id = made.json()["id"]
    requests = requests_of(user_id, task_id, token, tokens.mint("someone_else"))
    differences = []
    for method, url, headers, body in requests:
        answers = [answer(client.request(method, url, headers=headers, content=body)) for client in (one_pass, stock)]
        if answers[0] != answers[1]:
            differences.append((method, url, body, *answers))
    assert differences == []
    assert len({method for method, *_ in requests}) == 5


def test_a_json_body_without_content_type_is_taken_as_json_not_a_500(both, make_user):
    """The contract's one media type is assumed for a body without a Content-Type, and it is
    validated as JSON: the handler gets it as JSON too (the stock path gave it bytes: a 500)."""
    alice = make_user("alice")
    one_pass, stock = both
    request = {"content": b'{"title": "no type"}', "headers": alice.auth}
    made = one_pass.post(f"/api/{alice.id}/tasks", **request)
    assert made.status_code == 201 and made.json()["title"] == "no type"
    assert stock.post(f"/api/{alice.id}/tasks", **request).status_code == 500
    invalid = one_pass.post(f"/api/{alice.id}/tasks", content=b'{"title": ""}', headers=alice.auth)
    assert invalid.status_code == 400


# --- many generated inputs, on the adapter's small document ---------------------------------


@pytest.fixture(scope="module")
def small_both():
    contract.install()
    clients = []
    for middlewares in (contract.one_pass_stack(MIDDLEWARES, validate_responses=True), list(MIDDLEWARES)):
        app = AsyncApp(
            __name__,
            middlewares=middlewares,
            validator_map=contract.VALIDATOR_MAP,
            uri_parser_class=contract.URIParser,
        )
        app.add_api(DOCUMENT, resolver=Resolver(HANDLERS.__getitem__), validate_responses=True, strict_validation=True)
        register_error_handlers(app, DOCUMENT)
        clients.append(TestClient(app, raise_server_exceptions=False))
    with clients[0] as one_pass, clients[1] as stock:
        yield one_pass, stock


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["id", "note", "x"]), inner),
    max_leaves=6,
)
query_values = st.one_of(
    st.text(max_size=6), st.integers(-20, 20).map(str), st.sampled_from(["null", "", "2026-11-22T10:00:00Z"])
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limit=st.none() | query_values,
    since=st.none() | query_values,
    extra=st.booleans(),
    body=json_values,
    raw=st.none() | st.binary(max_size=12),
)
def test_generated_requests_answer_the_same_through_both_paths(small_both, limit, since, extra, body, raw):
    params = {name: value for name, value in (("limit", limit), ("since", since)) if value is not None}
    if extra:
        params["unknown"] = "1"
    content = raw if raw is not None else json.dumps(body).encode()
    for method, kwargs in (
        ("GET", {"params": params}),
        ("POST", {"content": content, "headers": {"Content-Type": "application/json"}}),
    ):
        one_pass, stock = (answer(client.request(method, "/things", **kwargs)) for client in small_both)
        assert one_pass == stock


def test_a_handler_reads_its_request_through_connexion_as_on_the_stock_path():
    """`connexion.request` in a handler: the request as sent, through both paths; on the one-pass
    path it is the request the pass made, not a new one on each use."""

    async def make_thing(body):
        made = connexion.request._get_current_object()
        contract.request.state.noted = "kept"  # through the state's attributes, into the scope's dict
        return {
            "header": connexion.request.headers.get("X-Note"),
            "made_once": made is connexion.request._get_current_object(),
            "same_for_handlers": contract.request.headers.get("X-Note") == "n",
            "state": contract.request.scope["state"].get("noted"),
        }, 201

    contract.install()
    answers = []
    for middlewares in (contract.one_pass_stack(MIDDLEWARES, validate_responses=False), list(MIDDLEWARES)):
        app = AsyncApp(
            __name__, middlewares=middlewares, validator_map=contract.VALIDATOR_MAP, uri_parser_class=contract.URIParser
        )
        app.add_api(DOCUMENT, resolver=Resolver({**HANDLERS, "make_thing": make_thing}.__getitem__))
        with TestClient(app) as client:
            answers.append(client.post("/things", json={"id": str(uuid.uuid4())}, headers={"X-Note": "n"}).json())
    one_pass, stock = answers
    assert one_pass["header"] == stock["header"] == "n"
    assert one_pass["made_once"] and not stock["made_once"]
    assert one_pass["same_for_handlers"] and stock["same_for_handlers"]
    assert one_pass["state"] == stock["state"] == "kept"


def test_connexion_request_outside_a_request_is_unbound_as_werkzeug_says():
    """Outside a request `connexion.request` says so as Connexion's does (a RuntimeError), which
    is what lets `inspect` and `isinstance` look at it at all."""
    contract.install()
    assert not inspect.isfunction(connexion.request)
    with pytest.raises(RuntimeError):
        connexion.request.headers  # noqa: B018 - the access is the test
