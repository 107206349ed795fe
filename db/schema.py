"""Which migration the code expects, and which one the database is at: a service whose
database is behind (or ahead) is not ready to take traffic."""

from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from service.errors import SchemaOutOfDate

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def expected_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


class SchemaCheck:
    def __init__(self, engine: AsyncEngine, expected: str) -> None:
        self.engine = engine
        self.expected = expected

    async def ensure_current(self) -> None:
        """Raises SchemaOutOfDate unless the database is at the expected revision; a database
        that does not answer raises its own fault (a 503 too)."""
        async with self.engine.connect() as connection:
            found = None
            if (await connection.execute(sa.text("SELECT to_regclass('alembic_version')"))).scalar():
                found = (await connection.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
        if found != self.expected:
            raise SchemaOutOfDate(expected=self.expected, found=found)
