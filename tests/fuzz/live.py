"""Fuzz the live service with the schemathesis CLI and `schemathesis.toml` (every check, every
phase), then report the requests each phase sent. Exits with schemathesis' status.

    python -m tests.fuzz.live [extra schemathesis options]
"""

import json
import subprocess
import sys
import time
from pathlib import Path

from cli import PROJECT
from tests.live_server import live_service

EVENTS = PROJECT / "build" / "fuzz" / "events.ndjson"


def requests_per_phase(events: Path) -> dict[str, int]:
    """Counts the requests each phase sent, from schemathesis' ndjson event report."""
    counts: dict[str, int] = {}
    for line in events.read_text().splitlines():
        scenario = json.loads(line).get("ScenarioFinished")
        if scenario:
            phase = scenario["phase"]
            counts[phase] = counts.get(phase, 0) + len(scenario["recorder"].get("interactions", {}))
    return counts


def main(extra_args: list[str]) -> int:
    # It sends thousands of requests, and reads each answer whole: event streams end quickly.
    with live_service(RATE_LIMIT="off", AUTH_FAILURE_RATE_LIMIT="off", STREAM_LIFETIME_SECONDS="0.2") as service:
        schemathesis = str(Path(sys.executable).parent / "schemathesis")
        command = [schemathesis, "run", "openapi/tasks.yaml", "--url", service.base_url, *extra_args]
        started = time.monotonic()
        status = subprocess.run(command, cwd=PROJECT, env=service.env).returncode
    print(f"fuzz: schemathesis finished in {time.monotonic() - started:.0f}s with exit status {status}")
    print("fuzz: requests sent per phase:", requests_per_phase(EVENTS))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
