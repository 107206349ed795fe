"""Who may call: a valid token for the path's user, and nobody else."""

import asyncio
import time
import uuid

import jwt
import pytest
from conftest import TEST_SECRET

# Named by the file, not drawn at random: every pytest-xdist worker collects the same test ids.
TASK = str(uuid.uuid5(uuid.NAMESPACE_URL, "tests/test_auth.py"))
EVERY_OPERATION = [
    ("GET", "", None),
    ("POST", "", {"title": "x"}),
    ("GET", f"/{TASK}", None),
    ("PUT", f"/{TASK}", {"title": "x"}),
    ("PATCH", f"/{TASK}", {"title": "x"}),
    ("DELETE", f"/{TASK}", None),
    ("PATCH", f"/{TASK}/complete", None),
]


def token(claims: dict, key: str = TEST_SECRET, algorithm: str = "HS256", **headers) -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers or None)


def call_with(client, user_id: str, authorization: str | None, method="GET", path="", body=None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return client.request(method, f"/api/{user_id}/tasks{path}", headers=headers, json=body)


def assert_unauthorized(response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize(("method", "path", "body"), EVERY_OPERATION)
def test_no_token_is_401_on_every_operation(client, method, path, body):
    assert_unauthorized(call_with(client, "alice", None, method, path, body))


def in_an_hour() -> int:
    return int(time.time()) + 3600


BAD_TOKENS = {
    "not a JWT": "Bearer not-a-jwt",
    "empty bearer": "Bearer ",
    "other scheme": "Basic YWxpY2U6c2VjcmV0",
    "garbage segments": "Bearer a.b.c",
    "latin-1 bytes": "Bearer \u00e9\u00e9.\u00e9\u00e9.\u00e9\u00e9".encode("latin-1"),
    "expired": "Bearer " + token({"sub": "alice", "exp": int(time.time()) - 3600}),
    "no exp": "Bearer " + token({"sub": "alice"}),
    "wrong key": "Bearer " + token({"sub": "alice", "exp": in_an_hour()}, key="another-secret-of-at-least-32-bytes!"),
    "alg none": "Bearer " + jwt.encode({"sub": "alice", "exp": in_an_hour()}, None, algorithm="none"),
    "no user": "Bearer " + token({"exp": in_an_hour()}),
    "user not a string": "Bearer " + token({"sub": 42, "exp": in_an_hour()}),
    "not yet valid": "Bearer " + token({"sub": "alice", "exp": in_an_hour(), "nbf": in_an_hour() - 60}),
    "payload not an object": "Bearer eyJhbGciOiJIUzI1NiJ9.WzFd.c2ln",
}


@pytest.mark.parametrize("authorization", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_a_bad_token_is_401_never_500(client, authorization):
    assert_unauthorized(call_with(client, "alice", authorization))


def test_an_expired_token_says_so(client):
    expired = token({"sub": "alice", "exp": int(time.time()) - 3600})
    response = call_with(client, "alice", f"Bearer {expired}")
    assert response.json()["detail"] == "The token has expired."
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_the_user_comes_from_sub(client):
    assert call_with(client, "alice", "Bearer " + token({"sub": "alice", "exp": in_an_hour()})).status_code == 200


def test_the_user_comes_from_user_id_when_there_is_no_sub(client):
    response = call_with(client, "carol", "Bearer " + token({"user_id": "carol", "exp": in_an_hour()}))
    assert response.status_code == 200


def test_a_better_auth_style_token_with_issuer_and_audience_is_accepted(client):
    claims = {"sub": "dave", "iss": "http://localhost:3000", "aud": "http://localhost:3000", "exp": in_an_hour()}
    assert call_with(client, "dave", "Bearer " + token(claims)).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), EVERY_OPERATION)
def test_a_valid_token_for_another_user_is_403_on_every_operation(alice, bob, method, path, body):
    response = alice.call(method, path, owner=bob.id, json=body)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "FORBIDDEN"


def test_403_comes_before_validation(alice, bob):
    response = alice.call("POST", owner=bob.id, json={"title": ""})
    assert response.status_code == 403


def test_issuer_and_audience_are_enforced_when_configured(settings):
    from dataclasses import replace

    from starlette.testclient import TestClient

    from app import create_app

    strict = replace(settings, jwt_issuer="https://auth.example", jwt_audience="https://auth.example")
    with TestClient(create_app(strict)) as client:
        good = {"sub": "erin", "iss": "https://auth.example", "aud": "https://auth.example", "exp": in_an_hour()}
        assert call_with(client, "erin", "Bearer " + token(good)).status_code == 200
        for wrong in ({"iss": "https://other.example"}, {"aud": "https://other.example"}):
            assert_unauthorized(call_with(client, "erin", "Bearer " + token({**good, **wrong})))


def test_twenty_thousand_users_calling_in_turn_have_their_signatures_checked_once(settings, monkeypatch):
    """A busy service's callers take turns: each of them pays for a signature check once per
    token, not on every call because the others pushed it out of the verified tokens."""
    from service.auth import TokenVerifier

    verifier = TokenVerifier(settings)
    tokens = [verifier.mint(f"user_{n}") for n in range(20_000)]
    checks = []
    decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *args, **kwargs: checks.append(1) or decode(*args, **kwargs))

    async def every_user_calls() -> list[str]:
        return [await verifier.user_of(token) for token in tokens]

    first = asyncio.run(every_user_calls())
    second = asyncio.run(every_user_calls())
    assert first == second == [f"user_{n}" for n in range(20_000)]
    assert len(checks) == 20_000  # the first call of each, none of the second
