"""The schema Alembic builds, the invariants PostgreSQL keeps, and life without a database."""

import asyncio
import uuid

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from cli import PROJECT
from db.tables import metadata


def run_sql(url: str, *statements: str, fetch: bool = False):
    """Runs statements in one transaction on a fresh engine; returns the last one's rows."""

    async def go():
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                result = None
                for statement in statements:
                    result = await connection.execute(sa.text(statement))
                return result.all() if fetch else None
        finally:
            await engine.dispose()

    return asyncio.run(go())


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logging"] = False
    return config


def schema_differences(url: str) -> list:
    async def go():
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                )
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture
def empty_database(database):
    """A database of its own, so that the running app's schema is never pulled from under it."""
    name = f"roundtrip_{uuid.uuid4().hex[:8]}"
    run_autocommit(database.url, f"CREATE DATABASE {name}")
    yield make_url(database.url).set(database=name).render_as_string(hide_password=False)
    run_autocommit(database.url, f"DROP DATABASE {name}")


def run_autocommit(url: str, statement: str) -> None:
    async def go():
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(sa.text(statement))
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_migrations_go_up_down_and_up_again_and_match_the_declared_tables(empty_database):
    config = alembic_config(empty_database)
    command.upgrade(config, "head")
    assert schema_differences(empty_database) == []
    command.downgrade(config, "base")
    assert run_sql(empty_database, "SELECT to_regclass('tasks') IS NULL", fetch=True) == [(True,)]
    assert run_sql(empty_database, "SELECT count(*) FROM pg_type WHERE typname = 'task_priority'", fetch=True) == [(0,)]
    command.upgrade(config, "head")
    assert schema_differences(empty_database) == []


BUGGY_WRITES = {
    "a blank title": "INSERT INTO tasks (user_id, title) VALUES ('u', '   ')",
    "an invisible title": "INSERT INTO tasks (user_id, title) VALUES ('u', E'\\u200b\\u0085\\u001c\\u007f\\u3164')",
    "a priority out of range": "INSERT INTO tasks (user_id, title, priority) VALUES ('u', 't', 'urgent')",
    "21 tags": "INSERT INTO tasks (user_id, title, tags) VALUES ('u', 't', array_fill('x'::text, ARRAY[21]))",
}


@pytest.mark.parametrize("write", BUGGY_WRITES.values(), ids=BUGGY_WRITES.keys())
def test_the_database_refuses_what_a_buggy_handler_might_write(database, write):
    with pytest.raises(sa.exc.DBAPIError):
        run_sql(database.url, *write.split("; "))


def test_a_buggy_write_cannot_make_completed_at_lie(database):
    rows = run_sql(
        database.url,
        "INSERT INTO tasks (user_id, title, completed_at) VALUES ('liar', 't', now())",
        "UPDATE tasks SET completed_at = now() WHERE user_id = 'liar'",
        "SELECT completed, completed_at FROM tasks WHERE user_id = 'liar'",
        fetch=True,
    )
    assert rows == [(False, None)]


def test_the_database_keeps_completed_at_and_updated_at(database):
    rows = run_sql(
        database.url,
        "INSERT INTO tasks (user_id, title, updated_at) VALUES ('keeper', 't', now() - interval '1 hour')",
        "UPDATE tasks SET title = 't' WHERE user_id = 'keeper'",  # changes nothing
        "SELECT completed_at IS NULL, updated_at < now() FROM tasks WHERE user_id = 'keeper'",
        fetch=True,
    )
    assert rows == [(True, True)], "a no-op update must not move updated_at"
    rows = run_sql(
        database.url,
        "UPDATE tasks SET completed = true WHERE user_id = 'keeper'",
        "SELECT completed_at IS NOT NULL, updated_at = now() FROM tasks WHERE user_id = 'keeper'",
        fetch=True,
    )
    assert rows == [(True, True)]
    rows = run_sql(
        database.url,
        "UPDATE tasks SET completed = false WHERE user_id = 'keeper'",
        "SELECT completed_at IS NULL FROM tasks WHERE user_id = 'keeper'",
        fetch=True,
    )
    assert rows == [(True,)]


@pytest.mark.parametrize("sort", ["created", "updated", "title", "due_date", "priority"])
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("page", ["first", "by cursor"])
def test_every_list_query_is_an_index_scan_on_the_users_rows(database, alice, sort, order, page):
    """EXPLAIN the very statement listTasks runs, on a table with many users' tasks."""
    import asyncpg

    from db.engine import asyncpg_url
    from db.tasks import Cursor, list_query

    run_sql(
        database.url,
        "INSERT INTO tasks (user_id, title, due_at) SELECT 'bulk_' || (n % 200), 'task ' || n, "
        "CASE WHEN n % 3 = 0 THEN NULL ELSE now() + n * interval '1 minute' END FROM generate_series(1, 20000) n "
        "WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE user_id = 'bulk_0')",
        "ANALYZE tasks",
    )
    values = {"user_id": "bulk_7", "limit": 51}
    if page == "by cursor":
        key = {"title": "task 500", "priority": "medium"}.get(sort, "2026-01-01T00:00:00+00:00")
        values.update(Cursor(sort, order, key, str(uuid.uuid4())).boundary())
    statement = list_query("pending", sort, order, frozenset(), page == "by cursor")

    async def explain():
        connection = await asyncpg.connect(asyncpg_url(database.url).replace("postgresql+asyncpg", "postgresql"))
        try:
            return await connection.fetch(f"EXPLAIN {statement.sql}", *statement.arguments(values))
        finally:
            await connection.close()

    plan = "\n".join(row[0] for row in asyncio.run(explain()))
    assert "Index" in plan and "Seq Scan" not in plan, plan


def test_each_selected_task_column_reaches_the_task_under_its_own_name_in_order():
    """`task_of` is written out for speed; it must stay what TASK_COLUMNS select, in their order
    (a page by title adds its sort key after them)."""
    from db.tasks import TASK_COLUMNS, task_of

    fields = [column.name for column in TASK_COLUMNS]
    row = (*(f"{field}'s value" for field in fields), "a title page's sort key")
    task = task_of(row)
    assert list(task.items()) == [(field, f"{field}'s value") for field in fields]


def test_readiness_is_503_while_the_schema_is_behind_the_code_and_200_after_migrating(settings):
    from dataclasses import replace

    from alembic import command
    from starlette.testclient import TestClient

    from app import create_app
    from cli import alembic_config
    from db.schema import expected_revision
    from tests.live_server import throwaway_database

    with throwaway_database(migrated=False) as behind:
        command.upgrade(alembic_config(behind.url), "0001")
        with TestClient(create_app(replace(settings, database_url=behind.url))) as client:
            response = client.get("/ready")
            assert response.status_code == 503
            problem = response.json()
            assert problem["code"] == "SCHEMA_OUT_OF_DATE"
            assert "at migration 0001" in problem["detail"] and f"expects {expected_revision()}" in problem["detail"]
            assert client.get("/health").status_code == 200, "liveness does not look at the database"
            command.upgrade(alembic_config(behind.url), "head")
            assert client.get("/ready").status_code == 200
