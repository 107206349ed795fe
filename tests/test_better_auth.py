"""Tokens minted by a real Better Auth server work end to end: its JWT plugin with default
settings (EdDSA, keys at /api/auth/jwks), and configured for RS256 and ES256."""

import contextlib
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from app import create_app
from tests.better_auth import better_auth_server


@contextlib.contextmanager
def api_trusting(settings, auth):
    """This API configured as the README says: Better Auth's JWKS, issuer and audience."""
    trusting = replace(settings, jwt_jwks_url=auth.jwks_url, jwt_issuer=auth.base_url, jwt_audience=auth.base_url)
    with TestClient(create_app(trusting), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("alg", ["EdDSA", "RS256", "ES256"])
def test_a_better_auth_user_creates_lists_and_completes_tasks(settings, alg):
    with better_auth_server(alg) as auth, api_trusting(settings, auth) as api:
        ada = auth.sign_up("ada")
        headers = {"Authorization": f"Bearer {ada.token}"}
        created = api.post(f"/api/{ada.id}/tasks", json={"title": "Write the first program"}, headers=headers)
        assert created.status_code == 201, created.text
        task = created.json()
        completed = api.patch(f"/api/{ada.id}/tasks/{task['id']}/complete", headers=headers)
        assert completed.json()["completed"] is True
        listed = api.get(f"/api/{ada.id}/tasks", headers=headers).json()
        assert [item["title"] for item in listed["items"]] == ["Write the first program"]


def test_a_better_auth_token_on_another_users_path_is_403(settings):
    with better_auth_server() as auth, api_trusting(settings, auth) as api:
        ada, grace = auth.sign_up("ada"), auth.sign_up("grace")
        response = api.get(f"/api/{grace.id}/tasks", headers={"Authorization": f"Bearer {ada.token}"})
        assert response.status_code == 403
        assert response.json()["code"] == "FORBIDDEN"
