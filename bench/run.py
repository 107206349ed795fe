"""Load test with wrk: the Tasks API against a hand-written reference, in the same run.

    python -m bench.run [--seconds 10] [--workers N] [--pool-size N --max-overflow N]

One uvicorn worker each unless --workers, on this machine's loopback; the API with response
validation off (as in production). Reports requests/s, p50/p95/p99 latency, resident memory and the server's
CPU time per request (the stable figure on a shared machine), and the ratio of each to the
reference. Results go to build/bench/results.json."""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cli import PROJECT
from service.auth import TokenVerifier
from service.settings import Settings
from tests.live_server import free_port, live_service

USER = "bench-user"
TASKS = 1000
WRK_LUA = """
think_ms = tonumber(os.getenv("THINK_MS") or "0")
delay = function() return think_ms end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""
SCENARIOS = [  # (name, path, connections, pause in ms between one connection's requests)
    # The reference implements exactly this request, so the ratios compare like with like.
    ("list 50 of 1,000, 10 connections flat out", "/api/{user}/tasks", 10, 0),
    ("list 50 of 1,000, 100 connections flat out", "/api/{user}/tasks", 100, 0),
    ("list 50 of 1,000, 100 users pausing 0.5 s", "/api/{user}/tasks", 100, 500),
]


def seed(database_url: str) -> None:
    async def go():
        engine = create_async_engine(database_url)
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO tasks (user_id, title, description, priority, tags, due_at) "
                    "SELECT :user, 'task ' || n, 'details of ' || n, (ARRAY['low','medium','high'])[1 + n % 3]"
                    "::task_priority, ARRAY['tag' || (n % 5)], CASE WHEN n % 4 = 0 THEN NULL "
                    "ELSE now() + n * interval '1 hour' END FROM generate_series(1, :count) n"
                ),
                {"user": USER, "count": TASKS},
            )
            await connection.execute(text("ANALYZE tasks"))
        await engine.dispose()

    asyncio.run(go())


def wrk(url: str, token: str, connections: int, seconds: int, script: Path, think_ms: int = 0) -> dict:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script)]
    command += ["-H", f"Authorization: Bearer {token}", url]
    env = {**os.environ, "THINK_MS": str(think_ms)}
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT"))
    requests, duration_us, p50, p95, p99, errors = map(int, line.split()[1:])
    return {
        "requests": requests,
        "requests_per_second": requests / (duration_us / 1e6),
        "p50_ms": p50 / 1000,
        "p95_ms": p95 / 1000,
        "p99_ms": p99 / 1000,
        "errors": errors,
    }


def server_cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def wait_until_serving(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
        except urllib.error.HTTPError:
            return  # an answer, even a 401, means it is up
        except OSError:
            time.sleep(0.1)
        else:
            return
    raise RuntimeError(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the API")
    parser.add_argument("--pool-size", type=int, help="DB_POOL_SIZE of each worker")
    parser.add_argument("--max-overflow", type=int, help="DB_MAX_OVERFLOW of each worker")
    args = parser.parse_args()
    seconds = args.seconds
    pool = {"DB_POOL_SIZE": args.pool_size, "DB_MAX_OVERFLOW": args.max_overflow}
    settings = {name: str(value) for name, value in pool.items() if value is not None}
    out = PROJECT / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_LUA)

    with live_service(validate_responses=False, RATE_LIMIT="off", WEB_CONCURRENCY=str(args.workers), **settings) as api:
        seed(api.env["DATABASE_URL"])
        token = TokenVerifier(Settings.from_env(database_url="x", jwt_secret=api.env["BETTER_AUTH_SECRET"])).mint(USER)
        port = free_port()
        reference = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.reference_app:app", "--port", str(port), "--log-level", "warning"],
            cwd=PROJECT,
            env=api.env,
        )
        try:
            reference_url = f"http://127.0.0.1:{port}"
            wait_until_serving(f"{reference_url}/api/{USER}/tasks")
            servers = {"tasks-api": (api.base_url, api.pid), "reference": (reference_url, reference.pid)}
            results = []
            for name, path, connections, think_ms in SCENARIOS:
                row = {"scenario": name}
                for server, (base_url, pid) in servers.items():
                    url = base_url + path.format(user=USER)
                    process = psutil.Process(pid)
                    every = [process, *process.children(recursive=True)]  # the workers, if several
                    cpu_before = server_cpu_seconds(every)
                    measured = wrk(url, token, connections, seconds, script, think_ms)
                    # The stable figure on a shared machine: the server's own CPU per request.
                    spent = server_cpu_seconds(every) - cpu_before
                    measured["cpu_ms_per_request"] = spent * 1000 / max(measured["requests"], 1)
                    measured["rss_mb"] = sum(p.memory_info().rss for p in every) / 2**20
                    row[server] = measured
                row["ratio"] = {
                    key: row["tasks-api"][key] / row["reference"][key]
                    for key in ("requests_per_second", "p95_ms", "rss_mb", "cpu_ms_per_request")
                }
                results.append(row)
        finally:
            reference.terminate()
            reference.wait()

    (out / "results.json").write_text(json.dumps(results, indent=2))
    header = f"{'scenario':42} {'req/s':>8} {'ref':>8} {'ratio':>6} {'p95 ms':>7} {'ref':>6} {'ratio':>6}"
    print(f"{header} {'RSS MB':>7} {'ref':>6} {'CPU ms/req':>10} {'ref':>6} {'ratio':>6}")
    for row in results:
        api_row, ref_row, ratio = row["tasks-api"], row["reference"], row["ratio"]
        print(
            f"{row['scenario']:42} {api_row['requests_per_second']:8.0f} {ref_row['requests_per_second']:8.0f} "
            f"{ratio['requests_per_second']:6.2f} {api_row['p95_ms']:7.1f} {ref_row['p95_ms']:6.1f} "
            f"{ratio['p95_ms']:6.2f} {api_row['rss_mb']:7.0f} {ref_row['rss_mb']:6.0f} "
            f"{api_row['cpu_ms_per_request']:10.2f} {ref_row['cpu_ms_per_request']:6.2f} "
            f"{ratio['cpu_ms_per_request']:6.2f}"
        )
        if api_row["errors"] or ref_row["errors"]:
            print(f"  errors: tasks-api {api_row['errors']}, reference {ref_row['errors']}")


if __name__ == "__main__":
    main()
