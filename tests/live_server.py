"""The service as it runs in production, for tests that call it over HTTP: a throwaway
PostgreSQL, migrations, and `cli.py serve` under uvicorn on a free port."""

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cli import PROJECT, migrate
from db.local_server import LocalPostgres


@dataclass
class LiveService:
    base_url: str
    env: dict[str, str]
    pid: int
    process: subprocess.Popen | None = None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(answers, what: str, process: subprocess.Popen, seconds: float = 30) -> None:
    """Polls `answers()` until it is true, while `process` (a server being started) runs."""
    deadline = time.monotonic() + seconds
    while not answers():
        assert process.poll() is None, f"{what} exited"
        assert time.monotonic() < deadline, f"{what} did not start in {seconds:.0f} s"
        time.sleep(0.05)


def answers(url: str) -> bool:
    """True once `url` answers 2xx/3xx."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def wait_until_ready(base_url: str, server: subprocess.Popen) -> None:
    wait_until(lambda: answers(f"{base_url}/ready"), "the API", server, seconds=60)


@contextlib.contextmanager
def throwaway_database(*, durable: bool = False, migrated: bool = True) -> Iterator[LocalPostgres]:
    """A fresh, migrated PostgreSQL in a temporary directory, stopped afterwards. Not durable
    unless asked: commits are acknowledged before they reach the disk."""
    root = Path(tempfile.mkdtemp(prefix="tasks-pg-"))
    root.chmod(0o711)  # the server's account must reach its data directory
    server = LocalPostgres(root / "pg", durable=durable).start()
    try:
        if migrated:
            migrate(server.url)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def live_service(*, validate_responses: bool = True, **settings: str) -> Iterator[LiveService]:
    """By default responses are validated against the contract, so any drift is a 500 the caller
    sees. `settings` are environment variables for the service (`RATE_LIMIT="off"`)."""
    with throwaway_database() as database, serving(database, validate_responses, **settings) as service:
        yield service


@contextlib.contextmanager
def serving(database: LocalPostgres, validate_responses: bool = True, **settings: str) -> Iterator[LiveService]:
    """`cli.py serve` on a free port over `database`, stopped afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "BETTER_AUTH_SECRET": secrets.token_urlsafe(48),
        "VALIDATE_RESPONSES": str(validate_responses).lower(),
        "LOG_LEVEL": "WARNING",
        **settings,
    }
    api = None
    try:
        api = subprocess.Popen([sys.executable, "cli.py", "serve", "--port", str(port)], cwd=PROJECT, env=env)
        base_url = f"http://127.0.0.1:{port}"
        wait_until_ready(base_url, api)
        yield LiveService(base_url, env, api.pid, api)
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
