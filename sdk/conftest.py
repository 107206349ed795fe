"""The live service, and the Python client generated from the contract (build/sdk/python)."""

import sys
import uuid

import pytest

from cli import PROJECT
from tests.live_server import live_service

GENERATED = PROJECT / "build" / "sdk" / "python"
if not (GENERATED / "tasks_api_client").is_dir():
    raise pytest.UsageError("Generate the SDKs first: python sdk/generate.py (tox -e sdk does both)")
sys.path.insert(0, str(GENERATED))


@pytest.fixture(scope="session")
def service():
    with live_service() as running:
        yield running


@pytest.fixture(scope="session")
def mint(service):
    from service.auth import TokenVerifier
    from service.settings import Settings

    verifier = TokenVerifier(Settings.from_env(database_url="unused", jwt_secret=service.env["BETTER_AUTH_SECRET"]))
    return verifier.mint


@pytest.fixture
def user_id() -> str:
    return f"sdk_{uuid.uuid4().hex[:12]}"
