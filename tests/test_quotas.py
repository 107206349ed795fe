"""Per-user quotas: a user holds at most TASK_QUOTA tasks and IDEMPOTENCY_KEY_QUOTA live
idempotency keys. Past either a create is 403 QUOTA_EXCEEDED naming the quota, nothing is
created, and deleting (or, for keys, their expiry) makes room again. The counts are kept on the
user's counter row, under the lock that orders their writes, so concurrent creates cannot
overshoot them."""

import asyncio
import uuid
from dataclasses import replace

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from app import create_app
from db.engine import create_engine
from db.housekeeping import purge_expired
from db.tasks import TaskStore
from service.errors import QuotaExceeded
from tests.conftest import User

QUOTA = 5
KEY_QUOTA = 3


@pytest.fixture(scope="module")
def quota_client(settings):
    with TestClient(create_app(replace(settings, task_quota=QUOTA)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def user(quota_client, tokens) -> User:
    user_id = f"quota_{uuid.uuid4().hex[:12]}"
    return User(user_id, tokens.mint(user_id), quota_client)


def assert_over_quota(response, quota: str = "tasks", limit: int = QUOTA) -> None:
    assert response.status_code == 403, response.text
    problem = response.json()
    assert (problem["code"], problem["quota"], problem["limit"]) == ("QUOTA_EXCEEDED", quota, limit)


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
            await store.close()
            await store.engine.dispose()

    assert asyncio.run(race()) == (quota, 19)


@pytest.fixture(scope="module")
def key_quota_client(settings):
    app = create_app(replace(settings, idempotency_key_quota=KEY_QUOTA))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def keyed_user(key_quota_client, tokens) -> User:
    user_id = f"keys_{uuid.uuid4().hex[:12]}"
    return User(user_id, tokens.mint(user_id), key_quota_client)


def keyed_create(user: User, key: str, title: str = "Pay rent"):
    return user.call("POST", json={"title": title}, headers={"Idempotency-Key": key})


def age_keys(settings, user_id: str) -> None:
    """A day and a bit passes for the user's keys (their lifetime is 24 hours)."""

    async def age():
        engine = create_engine(settings)
        try:
            async with engine.begin() as connection:
                statement = "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE user_id = :id"
                await connection.execute(sa.text(statement), {"id": user_id})
        finally:
            await engine.dispose()

    asyncio.run(age())


def test_past_the_key_quota_a_new_key_is_refused_and_creates_nothing_but_replays_answer(keyed_user):
    first = [keyed_create(keyed_user, f"key {n}", f"task {n}") for n in range(KEY_QUOTA)]
    assert [response.status_code for response in first] == [201] * KEY_QUOTA
    assert_over_quota(keyed_create(keyed_user, "one key too many"), "idempotency_keys", KEY_QUOTA)
    assert len(keyed_user.list_tasks()["items"]) == KEY_QUOTA  # nothing was created
    replay = keyed_create(keyed_user, "key 0", "task 0")
    assert (replay.status_code, replay.headers.get("Idempotent-Replayed")) == (201, "true")
    assert replay.json()["id"] == first[0].json()["id"]
    keyed_user.create_task(title="without a key")  # the key quota is not the task quota


def test_expired_keys_make_room_again_at_once_or_once_purged(keyed_user, settings):
    for n in range(KEY_QUOTA):
        assert keyed_create(keyed_user, f"old {n}").status_code == 201
    assert_over_quota(keyed_create(keyed_user, "new 0"), "idempotency_keys", KEY_QUOTA)
    age_keys(settings, keyed_user.id)
    assert keyed_create(keyed_user, "new 0").status_code == 201  # the expired ones are forgotten

    for n in range(1, KEY_QUOTA):
        assert keyed_create(keyed_user, f"new {n}").status_code == 201
    assert_over_quota(keyed_create(keyed_user, "newer 0"), "idempotency_keys", KEY_QUOTA)
    age_keys(settings, keyed_user.id)

    async def purge():
        engine = create_engine(settings)
        try:
            return await purge_expired(engine, idempotency_key_seconds=24 * 3600, tombstone_seconds=30 * 86400)
        finally:
            await engine.dispose()

    assert asyncio.run(purge()) >= KEY_QUOTA
    for n in range(KEY_QUOTA):  # the purge gave back exactly what it deleted: room for the quota again
        assert keyed_create(keyed_user, f"newer {n}").status_code == 201
    assert_over_quota(keyed_create(keyed_user, "newest"), "idempotency_keys", KEY_QUOTA)


def test_twenty_concurrent_keyed_creates_at_one_below_the_key_quota_leave_exactly_the_quota(settings):
    quota = 10
    user_id = f"keyracer_{uuid.uuid4().hex[:12]}"

    async def race() -> tuple[int, int, int]:
        engine = create_engine(replace(settings, db_pool_size=20))
        store = TaskStore(engine, idempotency_key_quota=quota, in_transactions=settings.db_pgbouncer)
        try:
            for n in range(quota - 1):
                await store.create(user_id, {"title": f"task {n}"}, idempotency_key=(f"key {n}", "print"))
            results = await asyncio.gather(
                *(
                    store.create(user_id, {"title": "racer"}, idempotency_key=(f"racer {n}", "print"))
                    for n in range(20)
                ),
                return_exceptions=True,
            )
            refused = sum(isinstance(result, QuotaExceeded) for result in results)
            assert all(isinstance(result, tuple | QuotaExceeded) for result in results), results
            async with engine.connect() as connection:
                keys = sa.text("SELECT count(*) FROM idempotency_keys WHERE user_id = :user_id")
                tasks = sa.text("SELECT count(*) FROM tasks WHERE user_id = :user_id")
                held = [(await connection.execute(sql, {"user_id": user_id})).scalar() for sql in (keys, tasks)]
            return *held, refused
        finally:
            await store.close()
            await engine.dispose()

    assert asyncio.run(race()) == (quota, quota, 19)
