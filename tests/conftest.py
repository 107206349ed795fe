"""A real PostgreSQL for the session, the app with response validation on, and users."""

import os
import uuid
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from app import create_app
from cli import migrate
from db.local_server import LocalPostgres, find_binaries
from service.auth import TokenVerifier
from service.settings import Settings
from tests.citus import CitusCluster, citus_cluster
from tests.citus_build import CitusUnavailable, ensure_citus
from tests.live_server import throwaway_database
from tests.pgbouncer import pgbouncer

TEST_SECRET = "test-secret-that-is-at-least-32-bytes-long"


@dataclass
class Database:
    url: str  # what the service uses: through PgBouncer or Citus's coordinator when asked
    server: LocalPostgres | None
    direct_url: str = ""  # the server itself, for migrations and tests that look under the service
    cluster: CitusCluster | None = None  # with TEST_THROUGH_CITUS: the cluster `server` coordinates

    def __post_init__(self) -> None:
        self.direct_url = self.direct_url or self.url

    @property
    def pooled(self) -> bool:
        return self.url != self.direct_url


# The cluster's own tests need the cluster: they run with it, in `tox -e citus`.
collect_ignore = [] if os.environ.get("TEST_THROUGH_CITUS") else ["test_citus.py"]


def pytest_sessionstart(session) -> None:
    """On a machine without Citus, one line on how to get it, not an error per test."""
    if os.environ.get("TEST_THROUGH_CITUS"):
        try:
            ensure_citus(find_binaries())
        except CitusUnavailable as error:
            pytest.exit(str(error), returncode=1)


@pytest.fixture(scope="session")
def database():
    """TEST_DATABASE_URL if given, else a throwaway server of our own, migrated; with
    TEST_THROUGH_PGBOUNCER=1 the service reaches it through a transaction-mode PgBouncer; with
    TEST_THROUGH_CITUS=1 it is a Citus cluster (a coordinator and two workers), its tables
    distributed by the migrations."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        migrate(url)
        yield Database(url, None)
        return
    if os.environ.get("TEST_THROUGH_CITUS"):
        with citus_cluster() as cluster:
            migrate(cluster.url)
            yield Database(cluster.url, cluster.coordinator, cluster=cluster)
        return
    with throwaway_database() as server:
        if os.environ.get("TEST_THROUGH_PGBOUNCER"):
            with pgbouncer(server) as pooled_url:
                yield Database(pooled_url, server, direct_url=server.url)
        else:
            yield Database(server.url, server)


@pytest.fixture(scope="session")
def settings(database) -> Settings:
    return Settings.from_env(
        {},
        database_url=database.url,
        db_pgbouncer=database.pooled,
        jwt_secret=TEST_SECRET,
        validate_responses=True,
        db_connect_timeout_seconds=2,
        rate_limit="off",  # tests/test_rate_limits.py turns them on
        auth_failure_rate_limit="off",
        stream_lifetime_seconds=0.3,  # event streams end, so the test client can read them whole
    )


@pytest.fixture(scope="session")
def client(settings):
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def tokens(settings) -> TokenVerifier:
    return TokenVerifier(settings)


@dataclass
class User:
    """Someone calling the API with their own token, on their own tasks."""

    id: str
    token: str
    client: TestClient

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str = "", *, owner: str | None = None, headers=None, **kwargs):
        url = f"/api/{owner or self.id}/tasks{path}"
        return self.client.request(method, url, headers={**self.auth, **(headers or {})}, **kwargs)

    def create_task(self, **fields) -> dict:
        response = self.call("POST", json={"title": "A task", **fields})
        assert response.status_code == 201, response.text
        return response.json()

    def list_tasks(self, **params) -> dict:
        response = self.call("GET", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def all_tasks(self) -> list[dict]:
        """Every task, page after page."""
        tasks, cursor = [], None
        while True:
            page = self.list_tasks(limit=200, **({"cursor": cursor} if cursor else {}))
            tasks += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return tasks


@pytest.fixture
def make_user(client, tokens):
    def make(prefix: str = "user") -> User:
        user_id = f"{prefix}_{uuid.uuid4().hex[:12]}"
        return User(user_id, tokens.mint(user_id), client)

    return make


@pytest.fixture
def alice(make_user) -> User:
    return make_user("alice")


@pytest.fixture
def bob(make_user) -> User:
    return make_user("bob")
