"""Fuzz the live service: a throwaway PostgreSQL, uvicorn with response validation on, and the
schemathesis CLI with `schemathesis.toml` (every check, every phase). Exits with its status.

    python -m tests.fuzz.live [extra schemathesis options]
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cli import PROJECT, migrate
from db.local_server import LocalPostgres


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ready(base_url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("the API exited before it was ready")
        try:
            with urllib.request.urlopen(f"{base_url}/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit("the API did not become ready")


def requests_per_phase(events: Path) -> dict[str, int]:
    """Counts the requests each phase sent, from schemathesis' ndjson event report."""
    counts: dict[str, int] = {}
    if events.exists():
        for line in events.read_text().splitlines():
            scenario = json.loads(line).get("ScenarioFinished")
            if scenario:
                phase = scenario["phase"]
                counts[phase] = counts.get(phase, 0) + len(scenario["recorder"].get("interactions", {}))
    return counts


def main(extra_args: list[str]) -> int:
    root = Path(tempfile.mkdtemp(prefix="tasks-fuzz-"))
    root.chmod(0o711)
    database = LocalPostgres(root / "pg", durable=False).start()
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "BETTER_AUTH_SECRET": secrets.token_urlsafe(48),
        "VALIDATE_RESPONSES": "true",
        "LOG_LEVEL": "WARNING",
    }
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    api = None
    try:
        migrate(database.url)
        api = subprocess.Popen([sys.executable, "cli.py", "serve", "--port", str(port)], cwd=PROJECT, env=env)
        wait_until_ready(base_url, api)
        started = time.monotonic()
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            "openapi/tasks.yaml",
            "--url",
            base_url,
            *extra_args,
        ]
        status = subprocess.run(command, cwd=PROJECT, env=env).returncode
        print(f"fuzz: schemathesis finished in {time.monotonic() - started:.0f}s with exit status {status}")
        print("fuzz: requests sent per phase:", requests_per_phase(PROJECT / "build" / "fuzz" / "events.ndjson"))
        return status
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
        database.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
