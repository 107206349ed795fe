"""The async engine, tuned for a managed (possibly pooled, possibly sleeping) PostgreSQL."""

import time
import uuid

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.settings import Settings


def asyncpg_url(url: str) -> str:
    """Accepts the URLs providers hand out (`postgres://…?sslmode=require`) for asyncpg."""
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    query = dict(parsed.query)
    if "sslmode" in query:
        query["ssl"] = query.pop("sslmode")
    query.pop("channel_binding", None)  # libpq-only; asyncpg negotiates SCRAM by itself
    return parsed.set(query=query).render_as_string(hide_password=False)


IDLE_BEFORE_PING_SECONDS = 10.0
"""A connection that sat in the pool longer than this is pinged before use (`DB_POOL_PRE_PING`):
a sleeping or restarted database drops idle connections, while one under load never waits for
a round trip per request."""


def _ping_after_idle(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "checkin")
    def idle_from_now(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def ping_if_idle(dbapi_connection, record, _proxy) -> None:
        if time.monotonic() - record.info.pop("idle_since", time.monotonic()) > IDLE_BEFORE_PING_SECONDS:
            try:
                dbapi_connection.ping()
            except Exception as exc:
                raise DisconnectionError() from exc  # the pool replaces it and checks out again


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(asyncpg_url(settings.database_url))
    connect_args: dict = {
        "timeout": settings.db_connect_timeout_seconds,
        "command_timeout": settings.db_statement_timeout_seconds,
        "server_settings": {"application_name": "tasks-api"},
    }
    isolation_level = "AUTOCOMMIT"  # every operation is one statement, atomic by itself: no BEGIN/COMMIT
    if settings.db_pgbouncer:
        # A transaction-mode pooler hands each transaction to any server connection. asyncpg
        # prepares a statement and executes it in two round trips, which in autocommit are two
        # transactions, maybe on two servers ("prepared statement does not exist"): so here
        # every statement runs in a transaction, and no prepared statement outlives it or
        # clashes by name.
        isolation_level = "READ COMMITTED"
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = lambda: f"__asyncpg_{uuid.uuid4()}__"
        url = url.update_query_dict({"prepared_statement_cache_size": "0"})
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=settings.db_pool_recycle_seconds,
        pool_timeout=settings.db_connect_timeout_seconds,
        isolation_level=isolation_level,
        connect_args=connect_args,
    )
    if settings.db_pool_pre_ping:
        _ping_after_idle(engine)
    return engine
