"""Create the tasks table, its invariants and the indexes the list queries use.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, ENUM, TIMESTAMP, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

priority = ENUM("low", "medium", "high", name="task_priority", create_type=False)
no_due_date_last = sa.text("'infinity'::timestamp with time zone")


def upgrade() -> None:
    priority.create(op.get_bind())
    op.create_table(
        "tasks",
        sa.Column("id", UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("completed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("completed_at", TIMESTAMP(timezone=True)),
        sa.Column("due_at", TIMESTAMP(timezone=True)),
        sa.Column("priority", priority, nullable=False, server_default="medium"),
        sa.Column("tags", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'::text[]")),
        sa.Column("created_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("title ~ '\\S' AND char_length(title) <= 500", name="title_not_blank"),
        sa.CheckConstraint("char_length(description) <= 1000", name="description_length"),
        sa.CheckConstraint("cardinality(tags) <= 20", name="tags_at_most_20"),
        sa.CheckConstraint("completed = (completed_at IS NOT NULL)", name="completed_at_iff_completed"),
        sa.CheckConstraint("char_length(user_id) BETWEEN 1 AND 128", name="user_id_length"),
    )
    op.create_index("ix_tasks_user_created", "tasks", ["user_id", "created_at", "id"])
    op.create_index("ix_tasks_user_updated", "tasks", ["user_id", "updated_at", "id"])
    op.create_index("ix_tasks_user_title", "tasks", ["user_id", sa.text("lower(title)"), "id"])
    op.create_index(
        "ix_tasks_user_due", "tasks", ["user_id", sa.func.coalesce(sa.column("due_at"), no_due_date_last), "id"]
    )
    op.create_index("ix_tasks_user_priority", "tasks", ["user_id", "priority", "id"])

    # The database, not the handlers, keeps the server-maintained fields right:
    # updated_at moves only when a row really changes; completed_at is set when a task
    # becomes completed, kept while it stays so, and cleared when it is reopened.
    op.execute(
        """
        CREATE FUNCTION tasks_maintain() RETURNS trigger LANGUAGE plpgsql AS $$
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
    op.execute(
        "CREATE TRIGGER tasks_maintain BEFORE INSERT OR UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION tasks_maintain()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER tasks_maintain ON tasks")
    op.execute("DROP FUNCTION tasks_maintain()")
    op.drop_table("tasks")
    priority.drop(op.get_bind())
