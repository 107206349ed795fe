"""The commands as a newcomer meets them: one line when something is in the way, a reset that
starts afresh, and several workers serving as one."""

import asyncio
import http.client
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic import command

from cli import PROJECT, alembic_config, migrate
from db.local_server import LocalPostgres, LocalPostgresError
from db.schema import expected_revision
from service.auth import TokenVerifier
from service.settings import Settings
from tests.live_server import answers, free_port, serving, throwaway_database, wait_until


@pytest.fixture
def data_dir() -> Path:
    """A directory the server's account can reach (pytest's own are private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="tasks-cli-"))
    directory.chmod(0o711)
    return directory


ENV = {
    **{name: value for name, value in os.environ.items() if name != "TOX_ENV_NAME"},  # as run by hand, not under tox
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    "BETTER_AUTH_SECRET": "s" * 32,
}


def on_a_taken_port(command: str, env: dict) -> tuple[int, subprocess.CompletedProcess]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "cli.py", command, "--port", str(port)],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
        )
    return port, result


def test_a_taken_port_is_said_in_one_line_before_anything_else():
    port, result = on_a_taken_port("serve", ENV)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"tasks-api: port {port} on 127.0.0.1 is in use; pick another: `python3 cli.py serve --port {port + 1}` "
        f"(or PORT={port + 1}).\n"
    )


def test_a_second_development_server_under_tox_is_told_the_whole_way_in_one_line(data_dir):
    """The port after `--`, and data of its own: the first copy's PostgreSQL holds `.data`."""
    first = LocalPostgres(data_dir / "postgres", durable=False).start()
    try:
        env = {**os.environ, "TASKS_API_DATA_DIR": str(data_dir), "TOX_ENV_NAME": "serve"}
        env.pop("DATABASE_URL", None)
        port, result = on_a_taken_port("dev", env)
    finally:
        first.stop()
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"another copy of this API runs on {data_dir / 'postgres'}" in result.stderr
    assert result.stderr.endswith(
        f"`TASKS_API_DATA_DIR=.data-{port + 1} python3 -m tox -e serve -- --port {port + 1}`.\n"
    )


def test_a_second_server_on_the_same_data_says_why_in_one_line(data_dir):
    tmp_path = data_dir
    first = LocalPostgres(tmp_path / "pg", durable=False).start()
    try:
        try:
            LocalPostgres(tmp_path / "pg", durable=False).start()
        except LocalPostgresError as error:
            message = str(error)
        assert message.startswith(f"PostgreSQL already runs on {tmp_path / 'pg'} (pid {first.process.pid})")
        assert "\n" not in message
    finally:
        first.stop()


def test_reset_wipes_the_development_data_but_never_under_a_running_server(data_dir):
    tmp_path = data_dir
    env = {**os.environ, "TASKS_API_DATA_DIR": str(tmp_path)}
    server = LocalPostgres(tmp_path / "postgres", durable=False).start()
    (tmp_path / "dev-secret").write_text("s" * 48)
    try:
        refused = subprocess.run(
            [sys.executable, "cli.py", "reset"], cwd=PROJECT, env=env, capture_output=True, text=True
        )
        assert refused.returncode == 2 and "is running" in refused.stderr
    finally:
        server.stop()
    done = subprocess.run([sys.executable, "cli.py", "reset"], cwd=PROJECT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "postgres").exists() and not (tmp_path / "dev-secret").exists()


def test_two_workers_serve_as_one_and_their_metrics_add_up(database):
    with serving(database.server, validate_responses=False, WEB_CONCURRENCY="2", METRICS_ENABLED="true") as service:
        settings = Settings.from_env({}, database_url="unused", jwt_secret=service.env["BETTER_AUTH_SECRET"])
        request = urllib.request.Request(
            f"{service.base_url}/api/counted/tasks",
            headers={"Authorization": f"Bearer {TokenVerifier(settings).mint('counted')}"},
        )
        for _ in range(20):  # new connections: the kernel spreads them over both workers
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
        with urllib.request.urlopen(f"{service.base_url}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        # One keep-alive connection, one request after another: without TCP_NODELAY on the
        # workers' sockets each answer waited ~44 ms for a delayed ACK (2.2 s for these 50).
        connection = http.client.HTTPConnection(service.base_url.removeprefix("http://"), timeout=10)
        started = time.monotonic()
        for _ in range(50):
            connection.request("GET", "/health")
            assert connection.getresponse().read() == b'{"status":"ok"}'
        assert time.monotonic() - started < 1.5
        connection.close()
    assert 'tasks_api_requests_total{operation="listTasks",status="200"} 20.0' in metrics


def test_ctrl_c_in_a_terminal_stops_the_development_server_cleanly(data_dir):
    """A person at a terminal presses Ctrl-C: exit 0, no traceback, its PostgreSQL stopped."""
    port = free_port()
    env = {**os.environ, "TASKS_API_DATA_DIR": str(data_dir), "PORT": str(port), "LOG_LEVEL": "WARNING"}
    pid, terminal = pty.fork()
    if pid == 0:  # the child: `cli.py dev` with the pseudo-terminal as its terminal
        os.chdir(PROJECT)
        os.execve(sys.executable, [sys.executable, "cli.py", "dev"], env)
    output = b""
    deadline = time.monotonic() + 60
    while b"Try it" not in output or not answers(f"http://127.0.0.1:{port}/ready"):
        assert time.monotonic() < deadline, output.decode(errors="replace")
        if select.select([terminal], [], [], 0.2)[0]:
            output += os.read(terminal, 65536)
    os.write(terminal, b"\x03")
    while select.select([terminal], [], [], 10)[0]:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output.decode(errors="replace")
    assert b"Traceback" not in output
    assert not (data_dir / "postgres" / "postmaster.pid").exists()


def test_a_private_checkout_keeps_the_development_database_where_its_account_can_reach_it(data_dir):
    """As root, a checkout under a 0700 directory (say /root): the `postgres` account cannot
    reach it, so the data goes to a directory of its own under /var/tmp, and it works there."""
    private = data_dir / "private"
    private.mkdir(mode=0o700)
    env = {**os.environ, "TASKS_API_DATA_DIR": str(private / ".data")}
    where = subprocess.run(
        [sys.executable, "-c", "import cli; print(cli.local_postgres_dir())"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if os.geteuid() != 0:
        assert where == str(private / ".data" / "postgres"), "a normal user runs the server as itself"
        return
    assert where.startswith("/var/tmp/tasks-api-") and where.endswith("/postgres")
    migrated = subprocess.run(
        [sys.executable, "cli.py", "migrate", "--local"], cwd=PROJECT, env=env, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr
    subprocess.run([sys.executable, "cli.py", "reset"], cwd=PROJECT, env=env, check=True, capture_output=True)


def start(*arguments: str, env: dict) -> subprocess.CompletedProcess:
    """A start that is refused before it serves: what it said, and how it ended."""
    return subprocess.run(
        [sys.executable, "cli.py", *arguments, "--port", str(free_port())],
        cwd=PROJECT,
        env={**ENV, "LOG_LEVEL": "WARNING", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def said_in_one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == "", "no banner"
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("not a url", "DATABASE_URL is not a database URL: write it as postgresql://"),
        ("postgresql://u:secret@host:port/db", "DATABASE_URL is not a database URL: write it as postgresql://"),
        ("mysql://u:secret@localhost/db", "DATABASE_URL is a mysql:// URL: the Tasks API runs on PostgreSQL"),
        (
            "postgresql://u:secret@127.0.0.1:1/db",
            "the database at 127.0.0.1:1/db cannot be reached (Connection refused)",
        ),
        (
            "postgresql://u:secret@no-such-host.invalid/db",
            "the database at no-such-host.invalid:5432/db cannot be reached",
        ),
    ],
)
def test_a_database_that_cannot_work_is_said_in_one_line_before_the_banner(url, said):
    for name in ("serve", "dev"):
        stderr = said_in_one_line(start(name, env={"DATABASE_URL": url}))
        assert stderr.startswith(f"tasks-api: {said}"), stderr
        assert "secret" not in stderr


def test_migrating_a_database_that_cannot_be_reached_is_one_line():
    result = subprocess.run(
        [sys.executable, "cli.py", "migrate"],
        cwd=PROJECT,
        env={**ENV, "DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == (
        "tasks-api: cannot migrate: the database at 127.0.0.1:1/db cannot be reached (Connection refused): "
        "start it or correct DATABASE_URL.\n"
    )


def test_a_database_never_migrated_is_refused_with_the_command_that_migrates_it():
    with throwaway_database(migrated=False) as database:
        served = said_in_one_line(start("serve", env={"DATABASE_URL": database.url}))
        under_tox = said_in_one_line(start("dev", env={"DATABASE_URL": database.url, "TOX_ENV_NAME": "serve"}))
    assert "has no schema (no migration applied): run `python3 cli.py migrate` first, or start with" in served
    assert "has no schema (no migration applied): run `python3 -m tox -e serve -- --migrate` first" in under_tox


def test_a_database_behind_the_code_is_refused_naming_both_migrations():
    with throwaway_database(migrated=False) as database:
        command.upgrade(alembic_config(database.url), "0001")
        said = said_in_one_line(start("serve", env={"DATABASE_URL": database.url}))
    assert f"is at migration 0001, this code expects {expected_revision()}: run `python3 cli.py migrate` first" in said


def sql(database, statement: str) -> None:
    async def run():
        connection = await asyncpg.connect(host=str(database.socket_dir), user="postgres", database="postgres")
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def test_told_to_wait_it_answers_503_until_the_database_is_migrated_then_works():
    """A deployment that migrates beside the service: no call is a 500 while the schema is missing
    or behind, and the service recovers without a restart once it is migrated."""
    with throwaway_database(migrated=False) as database:
        port = free_port()
        env = {**ENV, "DATABASE_URL": database.url, "LOG_LEVEL": "WARNING", "WAIT_FOR_DATABASE": "true"}
        serve = [sys.executable, "cli.py", "serve", "--port", str(port)]
        api = subprocess.Popen(serve, cwd=PROJECT, env=env, stderr=subprocess.PIPE, text=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: answers(f"{base}/health"), "the API", api, seconds=60)
            settings = Settings.from_env({}, database_url="unused", jwt_secret=ENV["BETTER_AUTH_SECRET"])
            auth = {"Authorization": f"Bearer {TokenVerifier(settings).mint('waiting')}"}
            tasks = f"{base}/api/waiting/tasks"
            missing = [httpx.get(f"{base}/ready"), httpx.get(tasks, headers=auth)]
            missing.append(httpx.post(tasks, headers=auth, json={"title": "early"}))
            migrate(database.url)
            migrated = [httpx.get(f"{base}/ready"), httpx.post(tasks, headers=auth, json={"title": "on time"})]
            sql(database, "ALTER TABLE tasks DROP COLUMN priority")  # a migration undone under it
            behind = [httpx.get(tasks, headers=auth), httpx.post(tasks, headers=auth, json={"title": "late"})]
        finally:
            api.terminate()
            said = api.communicate(timeout=30)[1]
    assert [answer.status_code for answer in missing] == [503, 503, 503]
    assert {answer.json()["code"] for answer in missing} == {"SCHEMA_OUT_OF_DATE"}
    assert [answer.status_code for answer in migrated] == [200, 201]
    assert [answer.status_code for answer in behind] == [503, 503], behind[0].text
    assert {answer.json()["code"] for answer in behind} == {"SCHEMA_OUT_OF_DATE"}
    assert said.splitlines()[0].endswith("answering 503 until it is ready (run `python3 cli.py migrate` first).")


def test_several_workers_locally_the_development_server_and_the_production_command_beside_it(data_dir):
    """`tox -e serve -- --workers 2`, and `cli.py serve --workers 2` pointed at its database with
    `cli.py database-url` and its secret: both serve the same tasks to the same token."""
    dev_port, serve_port = free_port(), free_port()
    env = {**os.environ, "TASKS_API_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    dev = subprocess.Popen(
        [sys.executable, "cli.py", "dev", "--workers", "2", "--port", str(dev_port)], cwd=PROJECT, env=env
    )
    production = None
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{dev_port}/ready"), "the development server", dev, seconds=90)
        url = subprocess.run(
            [sys.executable, "cli.py", "database-url"], cwd=PROJECT, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        secret = (data_dir / "dev-secret").read_text().strip()
        production_env = {**env, "DATABASE_URL": url, "BETTER_AUTH_SECRET": secret}
        serve = [sys.executable, "cli.py", "serve", "--workers", "2", "--port", str(serve_port)]
        production = subprocess.Popen(serve, cwd=PROJECT, env=production_env)
        wait_until(lambda: answers(f"http://127.0.0.1:{serve_port}/ready"), "cli.py serve", production, seconds=90)
        token = TokenVerifier(Settings.from_env({}, database_url="unused", jwt_secret=secret)).mint("dev-user")
        auth = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"http://127.0.0.1:{dev_port}/api/dev-user/tasks", headers=auth, json={"title": "both"})
        listed = httpx.get(f"http://127.0.0.1:{serve_port}/api/dev-user/tasks", headers=auth)
    finally:
        for process in (production, dev):
            if process is not None:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=60)
    assert created.status_code == 201
    assert created.json()["id"] in {task["id"] for task in listed.json()["items"]}
    assert dev.returncode == 0 and production.returncode == 0
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
