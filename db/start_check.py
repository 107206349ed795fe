"""What the start asks of its database before it serves: that DATABASE_URL is a PostgreSQL URL,
that the database answers, and that its schema is at the migration this code expects. Each
failure is one line that says what is wrong; the caller adds the command that fixes it."""

import asyncio
import os
import socket

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from db.engine import create_engine
from db.schema import expected_revision
from service.settings import ConfigError, Settings

POSTGRES_DRIVERS = {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2"}
URL_SHAPE = "postgresql://USER:PASSWORD@HOST:5432/DATABASE"


class DatabaseNotReady(Exception):
    """The database answers no, or has not the schema this code expects: waiting may help."""

    def __init__(self, message: str, remedy: str | None = None) -> None:
        super().__init__(message)
        self.remedy = remedy  # what fixes it; None: running the migrations


def postgres_url(url: str) -> URL:
    """DATABASE_URL parsed, or a ConfigError in one line (never the URL: it holds the password)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(f"DATABASE_URL is not a database URL: write it as {URL_SHAPE}.") from None
    if parsed.drivername not in POSTGRES_DRIVERS:
        raise ConfigError(
            f"DATABASE_URL is a {parsed.drivername}:// URL: the Tasks API runs on PostgreSQL ({URL_SHAPE})."
        )
    return parsed


def check(settings: Settings) -> None:
    """Raises ConfigError for a URL that cannot work, DatabaseNotReady for a database that does not yet."""
    url = postgres_url(settings.database_url)
    asyncio.run(_check(settings, url))


def where(url: URL) -> str:
    """The database, for a message: host, port and name, never the user or password."""
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


async def _check(settings: Settings, url: URL) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            found = None
            if (await connection.execute(sa.text("SELECT to_regclass('alembic_version')"))).scalar():
                found = (await connection.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
    except (OSError, TimeoutError, DBAPIError) as error:
        what, remedy = refusal(error)
        raise DatabaseNotReady(f"the database at {where(url)} {what}", remedy) from None
    finally:
        await engine.dispose()
    expected = expected_revision()
    if found is None:
        raise DatabaseNotReady(f"the database at {where(url)} has no schema (no migration applied)")
    if found != expected:
        raise DatabaseNotReady(f"the database at {where(url)} is at migration {found}, this code expects {expected}")


def refusal(error: BaseException) -> tuple[str, str]:
    """What went wrong, as the end of a sentence, and what fixes it."""
    cause = getattr(error, "orig", None) or error
    cause = getattr(cause, "__cause__", None) or cause  # SQLAlchemy's adapter wraps asyncpg's errors
    unreachable = "start it or correct DATABASE_URL"
    if isinstance(cause, socket.gaierror):
        return "cannot be reached (its host name does not resolve)", "correct DATABASE_URL"
    if isinstance(cause, TimeoutError):
        return "did not answer in time (DB_CONNECT_TIMEOUT_SECONDS)", unreachable
    if isinstance(cause, OSError):
        return f"cannot be reached ({os.strerror(cause.errno) if cause.errno else cause})", unreachable
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return f"refused the connection ({message})", "correct DATABASE_URL"
