"""The tables as the code sees them; `migrations/` creates exactly these (a test compares)."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, ENUM, JSONB, TIMESTAMP, UUID

metadata = sa.MetaData()

PRIORITIES = ("low", "medium", "high")
"""Declared in this order so that PostgreSQL sorts them low < medium < high."""

priority_type = ENUM(*PRIORITIES, name="task_priority", create_type=False)
NO_DUE_DATE_LAST = sa.text("'infinity'::timestamp with time zone")
TITLE_VISIBLE = (
    "title ~ '[^\\u0001-\\u0020\\u007f-\\u00a0\\u00ad\\u115f\\u1160\\u1680\\u180e\\u2000-\\u200f"
    "\\u2028-\\u202f\\u205f-\\u206f\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0]'"
)
"""The contract's Title pattern (a visible character somewhere) in PostgreSQL's words."""

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", UUID(as_uuid=True), nullable=False, server_default=sa.text("gen_random_uuid()")),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("completed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("completed_at", TIMESTAMP(timezone=True)),
    sa.Column("due_at", TIMESTAMP(timezone=True)),
    sa.Column("priority", priority_type, nullable=False, server_default="medium"),
    sa.Column("tags", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'::text[]")),
    sa.Column("created_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("revision", sa.BigInteger, nullable=False),  # set by the database: migrations/versions/0002
    sa.CheckConstraint(f"{TITLE_VISIBLE} AND char_length(title) <= 500", name="title_not_blank"),
    sa.CheckConstraint("char_length(description) <= 1000", name="description_length"),
    sa.CheckConstraint("cardinality(tags) <= 20", name="tags_at_most_20"),
    sa.CheckConstraint("completed = (completed_at IS NOT NULL)", name="completed_at_iff_completed"),
    sa.CheckConstraint("char_length(user_id) BETWEEN 1 AND 128", name="user_id_length"),
    sa.PrimaryKeyConstraint("user_id", "id", name="tasks_pkey"),  # user first: distributable by user
)

# One index per sort key, each led by user_id and ended by id: every page is an index scan
# on one user's rows, in either direction.
sa.Index("ix_tasks_user_created", tasks.c.user_id, tasks.c.created_at, tasks.c.id)
sa.Index("ix_tasks_user_updated", tasks.c.user_id, tasks.c.updated_at, tasks.c.id)
sa.Index("ix_tasks_user_title", tasks.c.user_id, sa.func.lower(tasks.c.title), tasks.c.id)
sa.Index("ix_tasks_user_due", tasks.c.user_id, sa.func.coalesce(tasks.c.due_at, NO_DUE_DATE_LAST), tasks.c.id)
sa.Index("ix_tasks_user_priority", tasks.c.user_id, tasks.c.priority, tasks.c.id)
sa.Index("ix_tasks_user_revision", tasks.c.user_id, tasks.c.revision, unique=True)
# Searches (migrations/versions/0006): GIN, led by user_id (btree_gin).
TRIGRAMS = {"title": "gin_trgm_ops", "description": "gin_trgm_ops"}
sa.Index("ix_tasks_user_title_trgm", tasks.c.user_id, tasks.c.title, postgresql_using="gin", postgresql_ops=TRIGRAMS)
sa.Index(
    "ix_tasks_user_description_trgm",
    tasks.c.user_id,
    tasks.c.description,
    postgresql_using="gin",
    postgresql_ops=TRIGRAMS,
)
# Tag filters (migrations/versions/0009): GIN on one key per (user, tag), see `tag_keys`.
TAG_KEY_SEPARATOR = "\x1f"
user_tag_keys = sa.func.user_tag_keys(tasks.c.user_id, tasks.c.tags, type_=ARRAY(sa.Text))
sa.Index("ix_tasks_user_tag_keys", user_tag_keys, postgresql_using="gin", postgresql_with={"fastupdate": "off"})


def tag_keys(user_id: str, tags: list[str]) -> list[str]:
    """The keys `user_tag_keys(user_id, tags)` holds for these tags, as the database makes them."""
    return [user_id + TAG_KEY_SEPARATOR + tag for tag in tags]


user_revisions = sa.Table(
    "user_revisions",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("revision", sa.BigInteger, nullable=False),  # the user's latest change
    sa.Column("purged_through", sa.BigInteger, nullable=False, server_default="0"),  # tombstones up to here are gone
    sa.Column("task_count", sa.BigInteger, nullable=False, server_default="0"),  # for the quota: migrations/0007
    sa.Column("key_count", sa.BigInteger, nullable=False, server_default="0"),  # idempotency keys: migrations/0008
)

task_tombstones = sa.Table(
    "task_tombstones",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("revision", sa.BigInteger, primary_key=True),
    sa.Column("task_id", UUID(as_uuid=True), nullable=False),
    sa.Column("deleted_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
)
sa.Index("ix_task_tombstones_deleted_at", task_tombstones.c.deleted_at)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("fingerprint", sa.Text, nullable=False),  # of the request the key was first used with
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("body", JSONB, nullable=False),  # the answer's; its Location follows from the task id
    sa.Column("created_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
)
sa.Index("ix_idempotency_keys_created_at", idempotency_keys.c.created_at)
