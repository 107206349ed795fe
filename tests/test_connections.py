"""The database connections behind every task operation: a connection the database dropped
while it sat idle is replaced before a request uses it, one that breaks under a request is never
handed out again, and requests get connections in the order they asked for them."""

import asyncio
import time
import uuid
from dataclasses import replace

import asyncpg
import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout

from db import compiled
from db import engine as engine_module
from db.compiled import driver_connection
from db.engine import asyncpg_url, create_engine
from db.tasks import TaskStore
from service.errors import TaskNotFound, database_fault


async def drop_the_idle_connection(store: TaskStore) -> None:
    """What a database restart, or a managed one going to sleep, does to an idle connection:
    the store's one pooled connection is ended from outside (and no other test's)."""
    async with driver_connection(store.turns, in_transaction=False) as connection:
        pid = await connection.fetchval("SELECT pg_backend_pid()")
    outsider = await asyncpg.connect(
        asyncpg_url(store.engine.url.render_as_string(hide_password=False)).replace("+asyncpg", "")
    )
    try:
        assert await outsider.fetchval("SELECT pg_terminate_backend($1)", pid)
        while await outsider.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            await asyncio.sleep(0.01)  # gone for good
    finally:
        await outsider.close()


def run_with_store(settings, scenario, **changes):
    async def go():
        store = TaskStore(create_engine(replace(settings, **changes)))
        try:
            return await scenario(store)
        finally:
            await store.close()
            await store.engine.dispose()

    return asyncio.run(go())


def test_a_connection_dropped_while_idle_is_replaced_before_a_request_uses_it(settings, monkeypatch):
    monkeypatch.setattr(engine_module, "IDLE_BEFORE_PING_SECONDS", 0.0)  # every idle one counts as stale

    async def scenario(store):
        with pytest.raises(TaskNotFound):  # a connection is opened, used, and goes back to the pool
            await store.get("nobody", uuid.uuid4())
        await drop_the_idle_connection(store)
        with pytest.raises(TaskNotFound):  # the answer, not a lost connection
            await store.get("nobody", uuid.uuid4())

    run_with_store(settings, scenario, db_pool_size=1, db_pool_pre_ping=True)


def test_without_the_ping_one_request_meets_the_dropped_connection_as_a_503_and_the_next_is_served(settings):
    async def scenario(store):
        with pytest.raises(TaskNotFound):
            await store.get("nobody", uuid.uuid4())
        await drop_the_idle_connection(store)
        with pytest.raises(Exception) as lost:
            await store.get("nobody", uuid.uuid4())
        assert database_fault(lost.value) is not None, lost.value  # a 503 that says so, not a 500
        with pytest.raises(TaskNotFound):  # the broken connection was not handed out again
            await store.get("nobody", uuid.uuid4())

    run_with_store(settings, scenario, db_pool_size=1, db_pool_pre_ping=False)


def test_requests_get_connections_in_the_order_they_asked(settings):
    """A request that arrives just as the connection comes back does not jump the queue."""

    async def scenario(store):
        served = []

        async def request(name: str) -> None:
            with pytest.raises(TaskNotFound):
                await store.get("nobody", uuid.uuid4())
            served.append(name)

        async with driver_connection(store.turns, in_transaction=False):  # the one connection, busy
            waiting = [asyncio.create_task(request(f"waiting {n}")) for n in range(5)]
            await asyncio.sleep(0.05)  # all five have asked and wait
            latecomers = [asyncio.create_task(request(f"late {n}")) for n in range(5)]  # ask as it is released
        await asyncio.gather(*waiting, *latecomers)
        assert served == [f"waiting {n}" for n in range(5)] + [f"late {n}" for n in range(5)]

    run_with_store(settings, scenario, db_pool_size=1, db_max_overflow=0)


def test_a_request_that_leaves_or_gives_up_while_waiting_its_turn_takes_no_turn_with_it(settings):
    """A client that goes away while its request waits (the request is cancelled) and a request
    that waited as long as the pool would have (a 503) leave the turns as they were: the ones
    still waiting are served in order, and afterwards a request is served at once."""

    async def scenario(store):
        served, outcomes = [], {}

        async def request(name: str) -> None:
            try:
                with pytest.raises(TaskNotFound):
                    await store.get("nobody", uuid.uuid4())
                served.append(name)
            except PoolTimeout:
                outcomes[name] = "gave up"

        async with driver_connection(store.turns, in_transaction=False):  # the one turn, taken
            early = asyncio.create_task(request("early"))
            await asyncio.sleep(store.turns.timeout * 0.6)
            leaving, late = asyncio.create_task(request("leaving")), asyncio.create_task(request("late"))
            await asyncio.sleep(0.05)
            leaving.cancel()
            await asyncio.sleep(store.turns.timeout * 0.6)  # "early" has waited past the pool's timeout
        await asyncio.gather(early, late, leaving, return_exceptions=True)
        assert leaving.cancelled()
        started = time.monotonic()
        await request("after")
        return outcomes, served, time.monotonic() - started

    outcomes, served, waited = run_with_store(
        settings, scenario, db_pool_size=1, db_max_overflow=0, db_connect_timeout_seconds=1.0
    )
    assert outcomes == {"early": "gave up"}
    assert served == ["late", "after"]
    assert waited < 0.5  # no turn was lost: served at once, not after the pool's timeout of 1 s


def test_the_connection_a_request_used_serves_the_next_and_goes_back_to_the_pool_when_requests_stop(settings):
    async def scenario(store):
        pool = store.engine.sync_engine.pool
        for pause in (0.0, 0.6):  # the second a while after the first
            await asyncio.sleep(pause)
            with pytest.raises(TaskNotFound):
                await store.get("nobody", uuid.uuid4())
        kept = pool.checkedout()  # kept for the next request, not checked in and out each time
        await asyncio.sleep(compiled.WARM_IDLE_SECONDS + 0.3)  # a second after the last request, and some
        return kept, pool.checkedout()

    assert run_with_store(settings, scenario, db_pool_size=3) == (1, 0)


def test_the_engines_other_users_always_find_a_connection_left_in_the_pool(settings):
    """Keyed creates, the change feed and housekeeping check out from the engine's pool: the
    connections kept for the next request never take the last one."""

    async def scenario(store):
        async def request() -> None:
            with pytest.raises(TaskNotFound):
                await store.get("nobody", uuid.uuid4())

        await asyncio.gather(request(), request())  # both connections of the pool in use at once
        kept = store.engine.sync_engine.pool.checkedout()
        started = time.monotonic()
        user_id = f"keyed_{uuid.uuid4().hex[:12]}"
        _, replay = await store.create(user_id, {"title": "A task"}, idempotency_key=("key", "print"))
        return kept, replay, time.monotonic() - started

    kept, replay, waited = run_with_store(settings, scenario, db_pool_size=2, db_max_overflow=0)
    assert (kept, replay) == (1, False)
    assert waited < compiled.WARM_IDLE_SECONDS  # served at once, not when the kept one cooled


def test_requests_in_every_turn_leave_the_engines_other_users_their_place_in_the_pools_queue(settings):
    """With every connection busy serving requests, one another user of the engine needs (a
    keyed create) is served in the pool's queue, not after the busy ones stop."""

    async def scenario(store):
        busy = True

        async def requests_one_after_another() -> None:
            while busy:
                with pytest.raises(TaskNotFound):
                    await store.get("nobody", uuid.uuid4())

        loops = [asyncio.create_task(requests_one_after_another()) for _ in range(12)]
        await asyncio.sleep(0.2)  # every turn taken, others waiting
        try:
            user_id = f"keyed_{uuid.uuid4().hex[:12]}"
            _, replay = await store.create(user_id, {"title": "A task"}, idempotency_key=("key", "print"))
        finally:
            busy = False
            await asyncio.gather(*loops)
        return replay

    assert run_with_store(settings, scenario, db_pool_size=3, db_max_overflow=0) is False
