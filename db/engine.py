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
    if settings.db_pgbouncer:
        # A transaction-mode pooler hands each transaction to any server connection, so no
        # prepared statement may outlive its transaction or clash by name.
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
        # Every operation is one statement, atomic by itself: no BEGIN/COMMIT round trips.
        isolation_level="AUTOCOMMIT",
        connect_args=connect_args,
    )
