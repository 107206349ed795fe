"""On a Citus cluster (`tox -e citus`), `cli.py migrate` distributes every table of user data by
user, co-located, so each user's rows live on one shard and every statement runs on one node."""

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from cli import alembic_config, migrate
from db.schema import MIGRATIONS
from migrations.distribution import DISTRIBUTION_COLUMN, REVISION, TRIGGER_FUNCTIONS, USER_TABLES
from tests.citus import sql
from tests.conftest import User
from tests.test_change_feed import sync


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


def test_a_database_with_tasks_from_before_citus_is_distributed_and_back_without_a_change(cluster):
    """An operator who moves an existing database onto Citus migrates it: the rows move to the
    shards with their revisions (so every client's ETags and sync tokens stay good), and a
    downgrade brings them back onto the coordinator as they were."""
    url = cluster.new_database("adopted")
    before_distribution = ScriptDirectory(str(MIGRATIONS)).get_revision(REVISION).down_revision
    command.upgrade(alembic_config(url), before_distribution)

    def rows(query: str) -> list[tuple]:
        return [tuple(row) for row in sql(cluster.coordinator, query, database="adopted")]

    tasks = "SELECT user_id, id, title, revision, updated_at FROM tasks ORDER BY user_id, id"
    counters = "SELECT user_id, revision FROM user_revisions ORDER BY user_id"
    distributed = "SELECT count(*) FROM pg_dist_partition"
    rows("INSERT INTO tasks (user_id, title) SELECT 'user' || (n % 5), 'task ' || n FROM generate_series(1, 50) n")
    as_they_were = rows(tasks), rows(counters)

    migrate(url)
    assert rows(distributed) == [(len(USER_TABLES),)]
    assert (rows(tasks), rows(counters)) == as_they_were
    rows("UPDATE tasks SET title = 'changed' WHERE user_id = 'user1' AND title = 'task 1'")
    assert rows("SELECT revision FROM tasks WHERE title = 'changed'") == [(11,)], "user1's counter goes on from 10"

    command.downgrade(alembic_config(url), before_distribution)
    assert rows(distributed) == [(0,)]
    assert len(rows(tasks)) == 50 and rows(counters)[1] == ("user1", 11)


@dataclass
class Load:
    """What the API acknowledged to one user's writer: tasks as last answered, ids deleted, and
    the revision of every task it was given, in the order it was given them."""

    alive: dict[str, dict] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    revisions: list[int] = field(default_factory=list)

    def acknowledged(self, response) -> None:
        if response.status_code in {200, 201}:
            task = response.json()
            self.alive[task["id"]] = task
            self.revisions.append(int(task["etag"].strip('"')))
        elif response.status_code == 204:
            task_id = response.request.url.path.rsplit("/", 1)[1]
            del self.alive[task_id]
            self.deleted.add(task_id)


def test_a_worker_added_and_the_shards_rebalanced_under_write_load_loses_nothing(cluster, make_user):
    """While writers create, change and delete through the API, a third worker joins and the
    rebalancer moves shards onto it by logical replication: no 500, a 503 only with Retry-After,
    every acknowledged write still there, each user's revisions strictly increasing, and each
    user's change feed from before the move naming exactly what the writers left."""
    users = [make_user("load") for _ in range(12)]
    tokens = {user.id: sync(user)[2] for user in users}
    stop = threading.Event()
    statuses: Counter = Counter()
    without_retry_after: list[int] = []
    slowest = [0.0]
    results: dict[str, Load] = {}

    def write(user: User, seed: int) -> None:
        load = results.setdefault(user.id, Load())
        chance = random.Random(seed)
        while not stop.is_set():
            action, sent = chance.random(), time.monotonic()
            if action < 0.5 or not load.alive:
                response = user.call("POST", json={"title": f"task {seed}"})
            elif action < 0.85:
                task_id = chance.choice(list(load.alive))
                response = user.call("PATCH", f"/{task_id}", json={"title": f"edited {chance.random()}"})
            else:
                task_id = chance.choice(list(load.alive))
                response = user.call("DELETE", f"/{task_id}")
            statuses[response.status_code] += 1
            slowest[0] = max(slowest[0], time.monotonic() - sent)
            if response.status_code == 503 and "Retry-After" not in response.headers:
                without_retry_after.append(response.status_code)
            load.acknowledged(response)

    writers = [threading.Thread(target=write, args=(user, seed)) for seed, user in enumerate(users)]
    for writer in writers:
        writer.start()
    try:
        time.sleep(1)
        before, started = sum(statuses.values()), time.monotonic()
        cluster.add_worker()
        sql(cluster.coordinator, "SELECT citus_rebalance_start(shard_transfer_mode => 'force_logical')")
        sql(cluster.coordinator, "SELECT citus_rebalance_wait()")
        during, seconds = sum(statuses.values()) - before, time.monotonic() - started
        time.sleep(1)
    finally:
        stop.set()
        for writer in writers:
            writer.join()

    new_worker = cluster.workers[-1].socket_dir
    moved = sql(cluster.coordinator, f"SELECT count(*) AS shards FROM citus_shards WHERE nodename = '{new_worker}'")
    total = sum(statuses.values())
    print(
        f"rebalance under load: {total} requests, {during} of them in the {seconds:.1f} s from adding the worker "
        f"to the rebalance's end; statuses {dict(statuses)}; slowest {slowest[0]:.1f} s; "
        f"{moved[0]['shards']} shards moved"
    )
    assert moved[0]["shards"] > 0, "the new worker took shards"
    assert set(statuses) <= {200, 201, 204, 503}, statuses
    assert statuses[503] <= total // 20 and not without_retry_after, "a few 503s at most, each saying when to retry"
    for user in users:
        load = results[user.id]
        assert load.revisions == sorted(set(load.revisions)), "one user's revisions strictly increase"
        now = {task["id"]: task for task in user.all_tasks()}  # a fast writer leaves more than a page
        assert now == load.alive, "every acknowledged write is there, as it was acknowledged"
        changed, deleted, _ = sync(user, tokens[user.id])
        assert changed == load.alive and deleted == load.deleted, "the change feed names every change"
