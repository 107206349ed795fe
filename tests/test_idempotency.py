"""A create retried after a timeout, or fired twice by an impatient button, creates one task:
the same Idempotency-Key and body return the first answer."""

import asyncio
import threading
import uuid

import asyncpg
import pytest

from db.engine import create_engine
from db.housekeeping import purge_expired


def create(user, key: str, **fields):
    return user.call("POST", json={"title": "Pay rent", **fields}, headers={"Idempotency-Key": key})


def test_a_retry_with_the_same_key_returns_the_first_answer_and_creates_nothing(alice):
    key = str(uuid.uuid4())
    first, retry = create(alice, key), create(alice, key)
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["Location"] == first.headers["Location"]
    assert retry.headers["ETag"] == first.headers["ETag"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(alice.list_tasks()["items"]) == 1


def test_the_same_body_in_another_key_order_is_the_same_request(alice):
    key = str(uuid.uuid4())
    first = alice.call(
        "POST",
        content=b'{"title": "a", "priority": "high"}',
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    again = alice.call(
        "POST",
        content=b'{"priority": "high", "title": "a"}',
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert again.json()["id"] == first.json()["id"]


def test_the_same_key_with_another_body_is_422_and_creates_nothing(alice):
    key = str(uuid.uuid4())
    create(alice, key)
    response = create(alice, key, title="Something else")
    assert response.status_code == 422
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert [task["title"] for task in alice.list_tasks()["items"]] == ["Pay rent"]


def test_keys_belong_to_one_user(alice, bob):
    key = "shared-key"
    assert create(alice, key).json()["user_id"] == alice.id
    assert create(bob, key).json()["user_id"] == bob.id


def test_the_same_key_while_the_first_request_is_in_flight_is_409(alice, database):
    key = str(uuid.uuid4())

    async def while_in_flight():
        """Holds the key's lock as the first request's transaction does, and asks meanwhile."""
        connection = await asyncpg.connect(database.direct_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await connection.execute("SELECT pg_advisory_lock(hashtextextended($1 || E'\\n' || $2, 0))", alice.id, key)
            return await asyncio.to_thread(create, alice, key)
        finally:
            await connection.close()

    response = asyncio.run(while_in_flight())
    assert response.status_code == 409
    assert response.json()["code"] == "IDEMPOTENCY_KEY_IN_USE"
    assert create(alice, key).status_code == 201, "once the first is done, the key works"


def test_twenty_clients_firing_the_same_keyed_create_make_one_task(alice):
    key = str(uuid.uuid4())
    start = threading.Barrier(20)
    answers = []

    def fire():
        start.wait()
        answers.append(create(alice, key))

    clients = [threading.Thread(target=fire) for _ in range(20)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    assert {answer.status_code for answer in answers} <= {201, 409}
    created = {answer.json()["id"] for answer in answers if answer.status_code == 201}
    assert len(created) == 1
    assert len(alice.list_tasks()["items"]) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_a_key_outside_the_contract_is_400(alice, key):
    response = create(alice, key)
    assert response.status_code == 400
    assert alice.list_tasks()["items"] == []


def test_expired_keys_are_purged_and_then_create_anew(alice, settings):
    key = str(uuid.uuid4())
    first = create(alice, key).json()

    async def purge():
        engine = create_engine(settings)
        try:
            return await purge_expired(engine, idempotency_key_seconds=0, tombstone_seconds=30 * 86400)
        finally:
            await engine.dispose()

    assert asyncio.run(purge()) >= 1
    again = create(alice, key)
    assert again.status_code == 201
    assert again.json()["id"] != first["id"]
