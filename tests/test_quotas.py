"""Per-user quotas: a user holds at most TASK_QUOTA tasks. Past it a create is 403
QUOTA_EXCEEDED naming the quota, nothing is created, and deleting makes room again. The count
is kept on the user's counter row, under the lock that orders their writes, so concurrent
creates cannot overshoot it."""

import asyncio
import uuid
from dataclasses import replace

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from app import create_app
from db.engine import create_engine
from db.tasks import TaskStore
from service.errors import QuotaExceeded
from tests.conftest import User

QUOTA = 5


@pytest.fixture(scope="module")
def quota_client(settings):
    with TestClient(create_app(replace(settings, task_quota=QUOTA)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def user(quota_client, tokens) -> User:
    user_id = f"quota_{uuid.uuid4().hex[:12]}"
    return User(user_id, tokens.mint(user_id), quota_client)


def assert_over_quota(response) -> None:
    assert response.status_code == 403, response.text
    problem = response.json()
    assert (problem["code"], problem["quota"], problem["limit"]) == ("QUOTA_EXCEEDED", "tasks", QUOTA)


def test_a_user_at_the_task_quota_cannot_create_until_they_delete(user):
    created = [user.create_task(title=f"task {n}") for n in range(QUOTA)]
    assert_over_quota(user.call("POST", json={"title": "one too many"}))
    assert len(user.list_tasks(limit=100)["items"]) == QUOTA  # nothing was created
    assert user.call("DELETE", f"/{created[0]['id']}").status_code == 204
    user.create_task(title="room again")
    assert_over_quota(user.call("POST", json={"title": "full again"}))


def test_an_idempotent_create_past_the_quota_keeps_its_key_for_later(user):
    first = user.create_task(title="first")
    for n in range(QUOTA - 1):
        user.create_task(title=f"task {n}")
    key = {"Idempotency-Key": "after-cleanup"}
    assert_over_quota(user.call("POST", json={"title": "later"}, headers=key))
    assert user.call("DELETE", f"/{first['id']}").status_code == 204
    assert user.call("POST", json={"title": "later"}, headers=key).status_code == 201


def test_other_users_are_not_counted(user, quota_client, tokens):
    for n in range(QUOTA):
        user.create_task(title=f"task {n}")
    other_id = f"quota_{uuid.uuid4().hex[:12]}"
    other = User(other_id, tokens.mint(other_id), quota_client)
    other.create_task(title="mine")


def test_twenty_concurrent_creates_at_one_below_the_quota_leave_exactly_the_quota(settings):
    quota = 30
    user_id = f"racer_{uuid.uuid4().hex[:12]}"

    async def race() -> tuple[int, int]:
        store = TaskStore(
            create_engine(replace(settings, db_pool_size=20)), task_quota=quota, in_transactions=settings.db_pgbouncer
        )
        try:
            for n in range(quota - 1):
                await store.create(user_id, {"title": f"task {n}"})
            results = await asyncio.gather(
                *(store.create(user_id, {"title": f"racer {n}"}) for n in range(20)), return_exceptions=True
            )
            refused = sum(isinstance(result, QuotaExceeded) for result in results)
            assert all(isinstance(result, tuple | QuotaExceeded) for result in results), results
            async with store.engine.connect() as connection:
                count = sa.text("SELECT count(*) FROM tasks WHERE user_id = :user_id")
                held = (await connection.execute(count, {"user_id": user_id})).scalar()
            return held, refused
        finally:
            await store.engine.dispose()

    assert asyncio.run(race()) == (quota, 19)
