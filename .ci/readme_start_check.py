"""Proves the README's start command: it serves, a task survives a restart, and stopping it
(Ctrl-C, then SIGTERM) leaves no PostgreSQL behind. Standard library only."""

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

BASE = "http://127.0.0.1:8000"


def start(command: str) -> tuple[subprocess.Popen, list[str]]:
    process = subprocess.Popen(
        ["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: list[str] = []

    def drain():
        for line in process.stdout:
            lines.append(line)
            print("  | " + re.sub(r"eyJ[\w.-]+", "<token>", line), end="", flush=True)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + 600  # the first start installs the environment
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the start command exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{BASE}/ready", timeout=2) as response:
                if response.status == 200:
                    return process, lines
        except OSError:
            time.sleep(0.5)
    sys.exit("the API did not become ready")


def token(lines: list[str]) -> str:
    for line in lines:
        match = re.match(r"Token\s+(\S+)", line)
        if match:
            return match.group(1)
    sys.exit("the start command printed no development token")


def call(method: str, path: str, bearer: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        BASE + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def data_dir(lines: list[str]) -> Path:
    """Where the banner says the development PostgreSQL keeps its data."""
    for line in lines:
        match = re.match(r"Database\s+PostgreSQL in (\S+)", line)
        if match:
            return Path(match.group(1))
    sys.exit("the start command did not say where its PostgreSQL is")


def stop(process: subprocess.Popen, lines: list[str], sig: signal.Signals) -> None:
    pid_file = data_dir(lines) / "postmaster.pid"
    os.killpg(process.pid, sig)
    process.wait(timeout=60)
    time.sleep(0.5)
    if pid_file.exists():
        sys.exit(f"PostgreSQL is still running after {sig.name} ({pid_file} remains)")
    if any("Traceback" in line for line in lines):
        sys.exit(f"stopping with {sig.name} printed a traceback")
    if sig == signal.SIGINT and process.returncode != 0:
        sys.exit(f"Ctrl-C ended the start command with exit {process.returncode}, not 0")
    print(f"stopped with {sig.name} (exit {process.returncode}, no traceback); PostgreSQL stopped too")


def ctrl_c_in_a_terminal(command: str) -> None:
    """A person runs the start command in a terminal and presses Ctrl-C: exit 0, no traceback,
    and tox's own summary says the environment is OK."""
    pid, terminal = pty.fork()
    if pid == 0:
        os.execvp("bash", ["bash", "-c", command])
    output = b""
    deadline = time.monotonic() + 600
    while b"Try it" not in output or not serving():
        if time.monotonic() > deadline:
            sys.exit("the start command did not serve in a terminal")
        if select.select([terminal], [], [], 0.5)[0]:
            output += os.read(terminal, 65536)
    os.write(terminal, b"\x03")
    while select.select([terminal], [], [], 30)[0]:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0 or "Traceback" in text or "serve: OK" not in text:
        print(text[-3000:])
        sys.exit(f"Ctrl-C in a terminal ended with exit {os.waitstatus_to_exitcode(status)}")
    if (data_dir(text.splitlines()) / "postmaster.pid").exists():
        sys.exit("PostgreSQL is still running after Ctrl-C in a terminal")
    print("Ctrl-C in a terminal: exit 0, no traceback, tox says serve: OK, PostgreSQL stopped too")


def serving() -> bool:
    try:
        with urllib.request.urlopen(f"{BASE}/ready", timeout=2):
            return True
    except OSError:
        return False


def main() -> None:
    command = sys.argv[1]
    process, lines = start(command)
    bearer = token(lines)
    user = "dev-user"
    created = call("POST", f"/api/{user}/tasks", bearer, {"title": f"survives a restart {time.time()}"})
    stop(process, lines, signal.SIGINT)

    process, lines = start(command)
    ids = [task["id"] for task in call("GET", f"/api/{user}/tasks?limit=200", token(lines))["items"]]
    stop(process, lines, signal.SIGTERM)
    if created["id"] not in ids:
        sys.exit("the task created before the restart is gone")
    print("a task created before a restart is still there after it")
    ctrl_c_in_a_terminal(command)
    print("readme-start: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
