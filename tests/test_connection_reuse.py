"""A connection is left in a known state after every answer: one given before the request's
body was read closes it (`Connection: close`), since what would follow on it is the rest of
that body, or, from a client that sent `Expect: 100-continue` and so no body, its next request;
one given after the whole body keeps it open for the next request. Raw sockets against the
production server (one uvicorn worker), its costs read from /proc as in test_hostile_input."""

import contextlib
import json
import socket
import time
import uuid

import pytest

from service.auth import TokenVerifier
from service.settings import Settings
from tests.live_server import live_service
from tests.test_hostile_input import Server, read_answer

BODY_TIMEOUT_SECONDS = 1.0
CALLS_PER_MINUTE = 3


@pytest.fixture(scope="module")
def server():
    settings = {
        "BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_SECONDS),
        "RATE_LIMIT": f"{CALLS_PER_MINUTE}/minute",
        "AUTH_FAILURE_RATE_LIMIT": "off",
    }
    with live_service(**settings) as service:
        api = Server(service)
        api.tokens = TokenVerifier(
            Settings.from_env({}, database_url="-", jwt_secret=service.env["BETTER_AUTH_SECRET"])
        )
        yield api


def what_follows(connection: socket.socket, seconds: float) -> tuple[bytes, float]:
    """What the server sends after its answer until it closes the connection (at most `seconds`)."""
    started = time.monotonic()
    connection.settimeout(seconds)
    received = b""
    with contextlib.suppress(ConnectionError, TimeoutError):
        while chunk := connection.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def post_head(server: Server, user: str, token: str, *extra: str, length: int = 1000) -> bytes:
    headers = [f"Authorization: Bearer {token}", "Content-Type: application/json", f"Content-Length: {length}"]
    return server.head("POST", f"/api/{user}/tasks", *headers, *extra).encode()


def early_answer(server: Server, case: str) -> tuple[bytes, int]:
    """A request the service answers before it reads its body, and the status of that answer."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    token = server.tokens.mint(user)
    if case == "no valid token":
        return post_head(server, user, "not-a-token"), 401
    if case == "another user's path":
        return post_head(server, "someone-else", token), 403
    if case == "over the rate limit":
        for _ in range(CALLS_PER_MINUTE):
            assert (
                server.request(server.head("GET", f"/api/{user}/tasks", f"Authorization: Bearer {token}")).status == 200
            )
        return post_head(server, user, token), 429
    return server.head("POST", "/nothing-here", "Content-Length: 1000").encode(), 404


@pytest.mark.parametrize("case", ["no valid token", "another user's path", "over the rate limit", "no such path"])
def test_an_answer_before_the_body_to_a_client_expecting_100_continue_closes_the_connection(server, case):
    """Without the close, the client's next request on the connection is read as the body it
    never sent: the request hangs, then gets a 408 for a request it did not make."""
    head, status = early_answer(server, case)
    with server.costs_at_most(), server.connect() as connection:
        connection.sendall(head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
        answer = read_answer(connection)
        assert answer.status == status, answer.body
        assert answer.headers.get("connection") == "close"
        with contextlib.suppress(OSError):  # the client's next request
            connection.sendall(server.head("GET", "/health").encode())
        rest, waited = what_follows(connection, 5 * BODY_TIMEOUT_SECONDS)
    assert rest == b"", rest[:100]
    assert waited < BODY_TIMEOUT_SECONDS, f"the connection stayed open {waited:.1f} s"


def test_no_408_follows_a_complete_answer(server):
    with server.costs_at_most(), server.connect() as connection:
        connection.sendall(post_head(server, "mallory", "not-a-token", length=100))  # and no body
        assert read_answer(connection).status == 401
        rest, waited = what_follows(connection, 5 * BODY_TIMEOUT_SECONDS)
    assert rest == b"", rest[:100]
    assert waited < BODY_TIMEOUT_SECONDS


def test_a_connection_whose_body_was_read_serves_the_next_request(server):
    user = "keeper"
    token = server.tokens.mint(user)
    body = json.dumps({"title": "Sent after 100 Continue"}).encode()
    with server.costs_at_most(), server.connect() as connection:
        connection.sendall(post_head(server, user, token, "Expect: 100-continue", length=len(body)))
        assert read_answer(connection).status == 100
        connection.sendall(body)
        created = read_answer(connection)
        assert created.status == 201, created.body
        assert "connection" not in created.headers
        connection.sendall(server.head("GET", f"/api/{user}/tasks", f"Authorization: Bearer {token}").encode())
        listed = read_answer(connection)
    assert listed.status == 200
    assert [task["title"] for task in json.loads(listed.body)["items"]] == ["Sent after 100 Continue"]
