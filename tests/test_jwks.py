"""Keys from a JWKS endpoint, as a production service needs them: any algorithm Better Auth
signs with, a static PEM key too, and an auth server that is down, slow, broken or rotating
its keys never turns into a 500 or a crash."""

import contextlib
import time
import uuid
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.testclient import TestClient

from app import create_app
from tests.jwks_server import ALGORITHMS, JwksServer, SigningKey

REFRESH_SECONDS = 0.3


@contextlib.contextmanager
def api_with_keys(settings, jwks: JwksServer | None = None, **overrides):
    quick = {"jwt_jwks_min_refresh_seconds": REFRESH_SECONDS, "jwt_jwks_timeout_seconds": 1.0}
    configured = replace(settings, jwt_jwks_url=jwks.url if jwks else None, **{**quick, **overrides})
    with TestClient(create_app(configured), raise_server_exceptions=False) as client:
        yield client


def tasks_of(api, token: str, user: str = "alice"):
    return api.get(f"/api/{user}/tasks", headers={"Authorization": f"Bearer {token}"})


def assert_keys_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "AUTH_KEYS_UNAVAILABLE"
    assert response.headers["Retry-After"] == "5"


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_tokens_of_every_algorithm_better_auth_offers_are_accepted(settings, alg):
    key = SigningKey(alg)
    jwks = JwksServer([key])
    with api_with_keys(settings, jwks) as api:
        assert tasks_of(api, key.token()).status_code == 200
    jwks.stop()


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_a_static_public_key_verifies_tokens_without_a_jwks_endpoint(settings, tmp_path, alg):
    key = SigningKey(alg)
    pem = tmp_path / "public.pem"
    pem.write_bytes(key.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    with api_with_keys(settings, jwt_public_key_file=str(pem)) as api:
        assert tasks_of(api, key.token()).status_code == 200
        assert tasks_of(api, SigningKey(alg).token()).status_code == 401, "another key of the same type"


def test_an_auth_server_down_at_start_is_503_until_it_returns(settings):
    key = SigningKey()
    jwks = JwksServer([key])
    jwks.go_down()
    with api_with_keys(settings, jwks) as api:
        assert_keys_unavailable(tasks_of(api, key.token()))
        jwks.come_back()
        time.sleep(REFRESH_SECONDS)
        assert tasks_of(api, key.token()).status_code == 200
    jwks.stop()


@pytest.mark.parametrize("failure", ["down", "garbage", "slow"])
def test_cached_keys_keep_working_while_the_auth_server_fails(settings, failure):
    key, newcomer = SigningKey(), SigningKey()
    jwks = JwksServer([key])
    with api_with_keys(settings, jwks, jwt_jwks_cache_seconds=REFRESH_SECONDS) as api:
        assert tasks_of(api, key.token()).status_code == 200
        jwks.keys.append(newcomer)
        if failure == "down":
            jwks.go_down()
        else:
            jwks.mode = failure
        time.sleep(REFRESH_SECONDS)  # the cache is stale: refreshed in the background, kept on failure
        assert tasks_of(api, key.token({"jti": "fresh"})).status_code == 200
        time.sleep(REFRESH_SECONDS)
        started = time.monotonic()
        assert_keys_unavailable(tasks_of(api, newcomer.token()))
        assert time.monotonic() - started < 3, "a slow auth server costs at most the fetch timeout"
    if failure != "down":
        jwks.stop()


def test_rotation_is_followed_without_a_restart(settings):
    old, new = SigningKey(), SigningKey()
    jwks = JwksServer([old])
    with api_with_keys(settings, jwks) as api:
        assert tasks_of(api, old.token()).status_code == 200
        jwks.keys = [old, new]  # a new key is published; the old one stays for a grace period
        time.sleep(REFRESH_SECONDS)
        assert tasks_of(api, new.token()).status_code == 200
        jwks.keys = [new]  # the old key is withdrawn
        time.sleep(REFRESH_SECONDS)
        assert tasks_of(api, SigningKey().token()).status_code == 401  # an unknown kid refreshes the keys
        assert tasks_of(api, old.token({"jti": "after withdrawal"})).status_code == 401
        assert tasks_of(api, new.token()).status_code == 200
    jwks.stop()


def test_a_storm_of_unknown_kids_fetches_the_keys_once_per_interval(settings):
    key = SigningKey()
    jwks = JwksServer([key])
    with api_with_keys(settings, jwks, jwt_jwks_min_refresh_seconds=60) as api:
        assert tasks_of(api, key.token()).status_code == 200
        for _ in range(200):
            forged = SigningKey()
            forged.kid = uuid.uuid4().hex
            assert tasks_of(api, forged.token()).status_code == 401
        assert jwks.fetches == 1, "garbage tokens must not make the service hammer the auth server"
    jwks.stop()
