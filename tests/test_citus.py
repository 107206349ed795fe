"""On a Citus cluster (`tox -e citus`), `cli.py migrate` distributes every table of user data by
user, co-located, so each user's rows live on one shard and every statement runs on one node."""

import pytest

from migrations.distribution import DISTRIBUTION_COLUMN, TRIGGER_FUNCTIONS
from tests.citus import sql


@pytest.fixture(scope="module")
def cluster(database):
    return database.cluster


def test_every_table_with_a_user_id_is_distributed_by_it_and_co_located(cluster):
    holding_users = {
        row["table_name"]
        for row in sql(
            cluster.coordinator,
            "SELECT table_name FROM information_schema.columns "
            f"WHERE table_schema = 'public' AND column_name = '{DISTRIBUTION_COLUMN}'",
        )
    }
    distributed = sql(
        cluster.coordinator,
        "SELECT logicalrelid::text AS table_name, partmethod::text, colocationid, "
        "column_to_column_name(logicalrelid, partkey) AS column_name FROM pg_dist_partition",
    )
    assert holding_users, "the schema holds user data"
    assert {row["table_name"] for row in distributed} == holding_users
    assert {(row["partmethod"], row["column_name"]) for row in distributed} == {("h", DISTRIBUTION_COLUMN)}
    assert len({row["colocationid"] for row in distributed}) == 1, "one user's rows of every table on one shard"


def test_the_shards_are_spread_over_the_workers_and_the_functions_triggers_call_are_on_each(cluster):
    placed = sql(cluster.coordinator, "SELECT DISTINCT nodename FROM citus_shards")
    assert {row["nodename"] for row in placed} == {str(worker.socket_dir) for worker in cluster.workers}
    for worker in cluster.workers:
        for function in TRIGGER_FUNCTIONS:
            assert sql(worker, f"SELECT to_regprocedure('{function}') IS NOT NULL AS here")[0]["here"], function


def test_one_users_task_lives_on_one_node_with_its_revision_counter_and_tombstones(cluster, alice):
    task = alice.create_task()
    alice.create_task()
    alice.call("DELETE", f"/{task['id']}")
    nodes = sql(
        cluster.coordinator,
        "SELECT DISTINCT shard.nodename FROM citus_shards shard "
        "JOIN pg_dist_shard s USING (shardid) "
        f"WHERE s.shardid IN (SELECT get_shard_id_for_distribution_column(t, '{alice.id}') "
        "FROM unnest(ARRAY['tasks', 'user_revisions', 'task_tombstones', 'idempotency_keys']::regclass[]) t)",
    )
    assert len(nodes) == 1
    assert alice.list_tasks()["items"][0]["etag"] == '"2"', "its revision counter moved on that node"
