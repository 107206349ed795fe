"""The async engine, tuned for a managed (possibly pooled, possibly sleeping) PostgreSQL."""

import uuid

from sqlalchemy.engine import make_url
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
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=settings.db_pool_recycle_seconds,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_timeout=settings.db_connect_timeout_seconds,
        isolation_level=isolation_level,
        connect_args=connect_args,
    )
