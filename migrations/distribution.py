"""Which tables are distributed, and how, when the database is a Citus cluster: the one place
that says so. On plain PostgreSQL (no `citus` extension in the database) nothing here runs.

Every table that holds user data is hash-distributed by `user_id`, co-located with
`user_revisions`, so that all of one user's rows (tasks, counter, tombstones, keys) live on one
shard: every statement of the API, scoped by one user, runs on one node, and the revision
triggers touch only that node. A migration that adds such a table lists it in USER_TABLES and
ends with `distribute()`; one that adds a function which a trigger calls lists it in
TRIGGER_FUNCTIONS, one that an index calls in INDEX_FUNCTIONS. On Citus, tests/test_citus.py
fails for a table with a `user_id` column that is not distributed.
"""

import sqlalchemy as sa
from alembic import op

REVISION = "0005"  # the migration that distributes the tables (and whose downgrade brings them back)
DISTRIBUTION_COLUMN = "user_id"
USER_TABLES = ("user_revisions", "tasks", "task_tombstones", "idempotency_keys")
"""Distributed by DISTRIBUTION_COLUMN, co-located with the first, in this order."""

TRIGGER_FUNCTIONS = ("next_revision(text)", "next_revision_removing_task(text)")
"""Functions that trigger functions call: Citus copies a trigger's own function to the workers
with the trigger, but not what that function calls (it cannot see into PL/pgSQL)."""

INDEX_FUNCTIONS = ("user_tag_keys(text,text[])",)
"""Functions that indexes (and the statements that use them) call, on every node."""


def citus(connection: sa.Connection) -> bool:
    return bool(connection.scalar(sa.text("SELECT count(*) FROM pg_extension WHERE extname = 'citus'")))


def prepare(connection: sa.Connection) -> None:
    """Settings a migration needs on Citus, for its transaction only: DDL on distributed tables
    one shard connection at a time (Alembic runs a migration in one transaction, and table DDL
    followed by more DDL over parallel connections fails), and triggers on distributed tables
    (ours touch only the same user's co-located rows, which is what makes them safe)."""
    connection.execute(sa.text("SET LOCAL citus.multi_shard_modify_mode = 'sequential'"))
    connection.execute(sa.text("SET LOCAL citus.enable_unsafe_triggers = on"))


def _distributed(connection: sa.Connection, table: str) -> bool:
    query = "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = to_regclass(:table)"
    return bool(connection.scalar(sa.text(query), {"table": table}))


def _exists(connection: sa.Connection, name: str, kind: str) -> bool:
    return connection.scalar(sa.text(f"SELECT to_{kind}(:name) IS NOT NULL"), {"name": name})


def distribute() -> None:
    """Distributes each table of USER_TABLES that exists and is not distributed yet (moving any
    rows it holds to the shards), and puts TRIGGER_FUNCTIONS and INDEX_FUNCTIONS on every node.
    Safe to call again."""
    connection = op.get_bind()
    if not citus(connection):
        return
    anchor = USER_TABLES[0]
    for table in USER_TABLES:
        if not _exists(connection, table, "regclass") or _distributed(connection, table):
            continue
        colocate = "default" if table == anchor else anchor
        # Copying the rows to the shards inserts them there: no trigger may take it for a change.
        connection.execute(sa.text(f'ALTER TABLE "{table}" DISABLE TRIGGER USER'))
        connection.execute(
            sa.text("SELECT create_distributed_table(:table, :column, colocate_with => :colocate)"),
            {"table": table, "column": DISTRIBUTION_COLUMN, "colocate": colocate},
        )
        connection.execute(sa.text("SELECT truncate_local_data_after_distributing_table(:table)"), {"table": table})
        connection.execute(sa.text(f'ALTER TABLE "{table}" ENABLE TRIGGER USER'))
    for function in TRIGGER_FUNCTIONS + INDEX_FUNCTIONS:
        if _exists(connection, function, "regprocedure"):
            connection.execute(sa.text("SELECT create_distributed_function(:function)"), {"function": function})


def undistribute() -> None:
    """Brings every distributed table of USER_TABLES back onto the coordinator as a plain table
    (its rows with it), the reverse of `distribute()`, for a downgrade."""
    connection = op.get_bind()
    if not citus(connection):
        return
    for table in reversed(USER_TABLES):
        if _exists(connection, table, "regclass") and _distributed(connection, table):
            connection.execute(sa.text("SELECT undistribute_table(:table)"), {"table": table})
