"""A real Citus cluster of throwaway servers (a coordinator and two workers, each a LocalPostgres
on its own Unix socket) for the tests and the benchmark that run the service on distributed
tables; `add_worker()` grows it, as an operator would before a rebalance."""

import asyncio
import contextlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from db.local_server import LocalPostgres, find_binaries
from tests.citus_build import ensure_citus

NODE_SETTINGS = {
    "shared_preload_libraries": "citus",
    "citus.node_conninfo": "sslmode=prefer",  # Citus asks for TLS between nodes by default
    "max_prepared_transactions": "100",  # Citus commits multi-node writes in two phases
    "wal_level": "logical",  # moving a shard (the rebalancer) is a logical replication
    "citus.shard_count": "8",  # not 32: fewer shards to create and query, the tests stay quick
}


def sql(server: LocalPostgres, *statements: str, database: str = "postgres") -> list:
    """Runs `statements` in one session on `server` and returns the last one's rows. In a thread
    of its own, so that it works whether or not the caller runs an event loop."""

    async def session() -> list:
        connection = await asyncpg.connect(host=str(server.socket_dir), user="postgres", database=database)
        try:
            rows = []
            for statement in statements:
                rows = await connection.fetch(statement)
            return rows
        finally:
            await connection.close()

    result: list = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.extend(asyncio.run(session()))
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result


class CitusCluster:
    """`url` is the coordinator's, which is all the service and the migrations see."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin_dir = find_binaries()
        ensure_citus(self.bin_dir)
        self.coordinator = self._start("coordinator")
        self.workers: list[LocalPostgres] = []

    @property
    def url(self) -> str:
        return self.coordinator.url

    @property
    def nodes(self) -> list[LocalPostgres]:
        return [self.coordinator, *self.workers]

    def _start(self, name: str) -> LocalPostgres:
        node = LocalPostgres(self.root / name, durable=False, bin_dir=self.bin_dir, settings=dict(NODE_SETTINGS))
        # How a node reaches itself (the rebalancer does): its own socket, never localhost:5432.
        node.settings["citus.local_hostname"] = str(node.socket_dir)
        node.start()
        try:
            sql(node, "CREATE EXTENSION citus")
            if name == "coordinator":
                sql(node, f"SELECT citus_set_coordinator_host('{node.socket_dir}', 5432)")
        except BaseException:
            node.stop()
            raise
        return node

    def add_worker(self) -> LocalPostgres:
        """A new, empty worker in the cluster: new distributed tables use it; existing shards
        stay where they are until a rebalance moves some."""
        worker = self._start(f"worker{len(self.workers) + 1}")
        self.workers.append(worker)
        sql(self.coordinator, f"SELECT citus_add_node('{worker.socket_dir}', 5432)")
        return worker

    def new_database(self, name: str) -> str:
        """The URL of a new, empty database of the cluster's nodes, Citus in it: a second
        deployment on the same servers, as one that existed before Citus would be."""
        for node in self.nodes:
            if not sql(node, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
                sql(node, f'CREATE DATABASE "{name}"')
            sql(node, "CREATE EXTENSION citus", database=name)
        coordinator = self.coordinator.socket_dir
        sql(self.coordinator, f"SELECT citus_set_coordinator_host('{coordinator}', 5432)", database=name)
        for worker in self.workers:
            sql(self.coordinator, f"SELECT citus_add_node('{worker.socket_dir}', 5432)", database=name)
        return f"postgresql+asyncpg://postgres@/{name}?host={coordinator}"

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


@contextlib.contextmanager
def citus_cluster(workers: int = 2) -> Iterator[CitusCluster]:
    """A coordinator and `workers` workers, not yet migrated, stopped afterwards."""
    root = Path(tempfile.mkdtemp(prefix="tasks-citus-"))
    root.chmod(0o711)  # the servers' account must reach their data directories
    cluster = CitusCluster(root)
    try:
        for _ in range(workers):
            cluster.add_worker()
        yield cluster
    finally:
        cluster.stop()
