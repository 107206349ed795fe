"""A count of each user's tasks on their counter row, kept by the same triggers that number
their revisions, so that a create checks the task quota (TASK_QUOTA) in O(1) and under the row
lock that already orders the user's writes: concurrent creates at the quota cannot overshoot.
The create itself raises the count (db/tasks.py, only while it is under the quota); a delete
lowers it in the tombstone trigger.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from migrations import distribution

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("user_revisions", sa.Column("task_count", sa.BigInteger, nullable=False, server_default="0"))
    op.execute(
        """
        UPDATE user_revisions SET task_count = counted.n
        FROM (SELECT user_id, count(*) AS n FROM tasks GROUP BY user_id) AS counted
        WHERE user_revisions.user_id = counted.user_id
        """
    )
    op.execute(
        """
        CREATE FUNCTION next_revision_removing_task(owner text) RETURNS bigint LANGUAGE sql AS $$
            UPDATE user_revisions SET revision = revision + 1, task_count = task_count - 1
            WHERE user_id = owner
            RETURNING revision
        $$
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION tasks_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO task_tombstones (user_id, revision, task_id)
            VALUES (OLD.user_id, next_revision_removing_task(OLD.user_id), OLD.id);
            RETURN NULL;
        END;
        $$
        """
    )
    distribution.distribute()  # on Citus: the new function on every node


def downgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION tasks_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO task_tombstones (user_id, revision, task_id)
            VALUES (OLD.user_id, next_revision(OLD.user_id), OLD.id);
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute("DROP FUNCTION next_revision_removing_task(text)")
    op.drop_column("user_revisions", "task_count")
