"""Safe writes and sync: a per-user revision on every change of a task (its ETag and the change
feed's order), tombstones of deleted tasks, and the idempotency keys of creates.

Each user has one counter row. Every insert, real update and delete of their tasks takes the
next value in a trigger, holding that row's lock until it commits, so one user's writes commit
in revision order: a reader that has seen revision N has seen every revision below it, and a
feed read `WHERE revision > since` can never skip a change that commits later.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP, UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_revisions",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("purged_through", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.add_column("tasks", sa.Column("revision", sa.BigInteger, nullable=False, server_default="0"))
    op.execute("ALTER TABLE tasks DISABLE TRIGGER tasks_maintain")  # numbering existing rows changes nothing else
    op.execute(
        """
        UPDATE tasks SET revision = numbered.n
        FROM (SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY updated_at, id) AS n FROM tasks) AS numbered
        WHERE tasks.id = numbered.id
        """
    )
    op.execute("ALTER TABLE tasks ENABLE TRIGGER tasks_maintain")
    op.execute(
        "INSERT INTO user_revisions (user_id, revision) SELECT user_id, max(revision) FROM tasks GROUP BY user_id"
    )
    op.alter_column("tasks", "revision", server_default=None)
    op.create_index("ix_tasks_user_revision", "tasks", ["user_id", "revision"], unique=True)

    op.create_table(
        "task_tombstones",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("task_id", UUID(as_uuid=True), nullable=False),
        sa.Column("deleted_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("user_id", "revision"),
    )
    op.create_index("ix_task_tombstones_deleted_at", "task_tombstones", ["deleted_at"])

    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("body", JSONB, nullable=False),  # the answer's; its Location follows from the task id
        sa.Column("created_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("user_id", "key"),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])

    op.execute(
        """
        CREATE FUNCTION next_revision(owner text) RETURNS bigint LANGUAGE sql AS $$
            INSERT INTO user_revisions (user_id, revision) VALUES (owner, 1)
            ON CONFLICT (user_id) DO UPDATE SET revision = user_revisions.revision + 1
            RETURNING revision
        $$
        """
    )
    # As in 0001, plus: a new revision on insert and on every update that really changes the row.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION tasks_maintain() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                NEW.completed_at := CASE WHEN NEW.completed THEN now() END;
                NEW.revision := next_revision(NEW.user_id);
                RETURN NEW;
            END IF;
            IF NEW.completed AND NOT OLD.completed THEN
                NEW.completed_at := now();
            ELSIF NOT NEW.completed THEN
                NEW.completed_at := NULL;
            ELSE
                NEW.completed_at := OLD.completed_at;
            END IF;
            IF ROW(NEW.*) IS DISTINCT FROM ROW(OLD.*) THEN
                NEW.updated_at := now();
                NEW.revision := next_revision(NEW.user_id);
            END IF;
            RETURN NEW;
        END;
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION tasks_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO task_tombstones (user_id, revision, task_id)
            VALUES (OLD.user_id, next_revision(OLD.user_id), OLD.id);
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute("CREATE TRIGGER tasks_tombstone AFTER DELETE ON tasks FOR EACH ROW EXECUTE FUNCTION tasks_tombstone()")


def downgrade() -> None:
    op.execute("DROP TRIGGER tasks_tombstone ON tasks")
    op.execute("DROP FUNCTION tasks_tombstone()")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION tasks_maintain() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                NEW.completed_at := CASE WHEN NEW.completed THEN now() END;
                RETURN NEW;
            END IF;
            IF NEW.completed AND NOT OLD.completed THEN
                NEW.completed_at := now();
            ELSIF NOT NEW.completed THEN
                NEW.completed_at := NULL;
            ELSE
                NEW.completed_at := OLD.completed_at;
            END IF;
            IF ROW(NEW.*) IS DISTINCT FROM ROW(OLD.*) THEN
                NEW.updated_at := now();
            END IF;
            RETURN NEW;
        END;
        $$
        """
    )
    op.execute("DROP FUNCTION next_revision(text)")
    op.drop_table("idempotency_keys")
    op.drop_table("task_tombstones")
    op.drop_index("ix_tasks_user_revision", "tasks")
    op.drop_column("tasks", "revision")
    op.drop_table("user_revisions")
