"""The async engine, tuned for a managed (possibly pooled, possibly sleeping) PostgreSQL."""

import contextlib
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


CLIENT_GRACE_SECONDS = 1.0
"""How much longer than the server's statement timeout asyncpg waits before it gives up by
itself: the server cancels first, and the connection stays usable."""


def _time_out_in_transactions(engine: AsyncEngine, milliseconds: int) -> None:
    """Behind a transaction-mode pooler a startup parameter is refused (PgBouncer 1.18) and a
    session SET would stay on whichever server connection ran it: every transaction sets its
    own timeout instead. The hot path (db/compiled.py) sends `record.info["begin"]` as its
    BEGIN, in the same round trip; SQLAlchemy's transactions set it as they begin."""
    begin = f"BEGIN; SET LOCAL statement_timeout = {milliseconds}"

    @event.listens_for(engine.sync_engine, "connect")
    def remember_begin(_dbapi_connection, record) -> None:
        record.info["begin"] = begin

    @event.listens_for(engine.sync_engine, "begin")
    def set_timeout(connection) -> None:
        # On the driver's cursor (the transaction begins with it). A failure here is outside
        # SQLAlchemy's error handling: the statement that follows meets it again, and is handled.
        with contextlib.suppress(Exception):
            cursor = connection.connection.cursor()
            cursor.execute(f"SET LOCAL statement_timeout = {milliseconds}")
            cursor.close()


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(asyncpg_url(settings.database_url))
    # PostgreSQL itself cancels a statement after DB_STATEMENT_TIMEOUT_SECONDS: one the API gave
    # up on never keeps running, holding a backend (asyncpg's own timeout only stops waiting).
    timeout_ms = max(1, round(settings.db_statement_timeout_seconds * 1000))
    connect_args: dict = {
        "timeout": settings.db_connect_timeout_seconds,
        "command_timeout": settings.db_statement_timeout_seconds + CLIENT_GRACE_SECONDS,
        "server_settings": {"application_name": "tasks-api", "statement_timeout": str(timeout_ms)},
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
        del connect_args["server_settings"]["statement_timeout"]
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
    if settings.db_pgbouncer:
        _time_out_in_transactions(engine, timeout_ms)
    return engine
