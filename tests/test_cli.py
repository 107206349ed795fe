"""The commands as a newcomer meets them: one line when something is in the way, a reset that
starts afresh, and several workers serving as one."""

import http.client
import os
import pty
import select
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from cli import PROJECT
from db.local_server import LocalPostgres, LocalPostgresError
from service.auth import TokenVerifier
from service.settings import Settings
from tests.live_server import answers, free_port, serving


@pytest.fixture
def data_dir() -> Path:
    """A directory the server's account can reach (pytest's own are private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="tasks-cli-"))
    directory.chmod(0o711)
    return directory


ENV = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "BETTER_AUTH_SECRET": "s" * 32}


def test_a_taken_port_is_said_in_one_line_before_anything_else():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "cli.py", "serve", "--port", str(port)],
            cwd=PROJECT,
            env=ENV,
            capture_output=True,
            text=True,
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        result.stderr
        == f"tasks-api: port {port} on 127.0.0.1 is in use; pick another with --port {port + 1} (or PORT={port + 1}).\n"
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
