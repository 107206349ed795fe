"""Attacks on the bearer token, one row each: every answer is a problem, every 401 carries
`WWW-Authenticate`, none is a 500, and the victim's tasks are unchanged afterwards.

The service trusts a JWKS with an Ed25519 and an RSA key, and the shared secret; it checks
issuer and audience. (A token over the header size limit is a 431 from the server itself:
tests/test_hostile_input.py.)"""

import base64
import hashlib
import hmac
import json
import time
from dataclasses import replace

import jwt
import pytest
from conftest import TEST_SECRET
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.testclient import TestClient

from app import create_app
from tests.jwks_server import JwksServer, SigningKey

ISSUER = AUDIENCE = "https://auth.example.com"
ED25519, RSA = SigningKey("EdDSA"), SigningKey("RS256")
VICTIM = "alice"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def claims(**changes) -> dict:
    now = int(time.time())
    return {"sub": VICTIM, "iat": now, "exp": now + 900, "iss": ISSUER, "aud": AUDIENCE, **changes}


def signed(key: SigningKey = ED25519, **changes) -> str:
    return key.token(claims(**changes))


def hs256_with_public_key() -> str:
    """The classic confusion: HMAC keyed with the published public key."""
    public_pem = ED25519.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    head = _b64(json.dumps({"alg": "HS256", "kid": ED25519.kid}).encode()) + "." + _b64(json.dumps(claims()).encode())
    return head + "." + _b64(hmac.new(public_pem, head.encode(), hashlib.sha256).digest())


def tampered() -> str:
    head, _, signature = signed().split(".")
    return f"{head}.{_b64(json.dumps(claims(sub='mallory')).encode())}.{signature}"


def impostor(**header) -> str:
    """A key of the attacker's own, under the published key's kid or pointing elsewhere."""
    attacker = SigningKey("EdDSA")
    attacker.kid = header.pop("kid", attacker.kid)
    return attacker.token(claims(), **header)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


ATTACKS = {
    "alg none": bearer(jwt.encode(claims(), None, algorithm="none")),
    "HS256 signed with the public key": bearer(hs256_with_public_key()),
    "another key of the same type under the published kid": bearer(impostor(kid=ED25519.kid)),
    "payload tampered after signing": bearer(tampered()),
    "expired": bearer(signed(exp=int(time.time()) - 120)),
    # A day ahead: these are built at import, and a loaded machine runs the suite for over 10 minutes.
    "nbf in the future": bearer(signed(nbf=int(time.time()) + 86400)),
    "iat in the future beyond the leeway": bearer(signed(iat=int(time.time()) + 86400)),
    "no exp": bearer(signed(exp=None)),
    "wrong iss": bearer(signed(iss="https://evil.example.com")),
    "wrong aud": bearer(signed(aud="https://other-api.example.com")),
    "unknown kid": bearer(impostor()),
    "kid of a key of another type": bearer(jwt.encode(claims(), RSA.private, "RS256", {"kid": ED25519.kid})),
    "sub missing": bearer(signed(sub=None)),
    "sub empty": bearer(signed(sub="")),
    "sub not a string": bearer(signed(sub=42)),
    "sub too long for a user id": bearer(signed(sub="a" * 129)),
    "non-base64 garbage": bearer("!!!.@@@.###"),
    "Bearer missing": {"Authorization": signed()},
    "Bearer misspelled": {"Authorization": f"Baerer {signed()}"},
    "jku pointing elsewhere": bearer(impostor(jku="https://evil.example.com/jwks")),
    "x5u pointing elsewhere": bearer(impostor(x5u="https://evil.example.com/cert.pem")),
    "jwk embedded in the header": bearer(impostor(jwk={"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})),
    "a token in the query string": {"query": {"access_token": signed()}},
    "a token in a cookie": {"Cookie": f"better-auth.session_token={signed()}; token={signed()}"},
}


@pytest.fixture(scope="module")
def api(settings):
    jwks = JwksServer([ED25519, RSA])
    trusting = replace(settings, jwt_jwks_url=jwks.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    with TestClient(create_app(trusting), raise_server_exceptions=False) as client:
        yield client
    jwks.stop()


def attempt(api, headers: dict, method: str = "POST"):
    headers = dict(headers)
    query = headers.pop("query", None)
    return api.request(method, f"/api/{VICTIM}/tasks", headers=headers, params=query, json={"title": "planted"})


def victims_tasks(api) -> list:
    response = api.get(f"/api/{VICTIM}/tasks", headers=bearer(signed()))
    assert response.status_code == 200, response.text
    return response.json()["items"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_attack_is_401_with_a_challenge_and_changes_nothing(api, attack):
    before = victims_tasks(api)
    response = attempt(api, ATTACKS[attack])
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["code"] == "UNAUTHORIZED"
    assert victims_tasks(api) == before


def test_two_authorization_headers_are_401_even_if_one_is_valid(api):
    response = api.request(
        "POST",
        f"/api/{VICTIM}/tasks",
        headers=[("Authorization", f"Bearer {signed()}"), ("Authorization", f"Bearer {signed(sub='mallory')}")],
        json={"title": "planted"},
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_valid_token_for_someone_else_on_the_victims_path_is_403(api):
    before = victims_tasks(api)
    response = attempt(api, bearer(signed(sub="mallory")))
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"
    assert victims_tasks(api) == before


def test_the_shared_secret_still_works_beside_the_keys(api):
    token = jwt.encode(claims(), TEST_SECRET, algorithm="HS256")
    assert api.get(f"/api/{VICTIM}/tasks", headers=bearer(token)).status_code == 200
