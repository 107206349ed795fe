"""Live updates: the time from a write's 2xx to its event on another open stream, p50 and p99,
with one and two workers, when notifications are lost (writes made past the API: only the 1 s
safety poll finds them), and behind PgBouncer without a direct URL (the 0.25 s poll); then what
1,000 idle streams cost one worker (RSS, CPU per second).

    python -m bench.live [--writes 100]

`bench/run.py` runs it after its cases, over its own database, and adds the tables to its report."""

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import threading
import time
from pathlib import Path

import asyncpg
import httpx
import psutil

from db.listener import listen_dsn
from service.auth import TokenVerifier
from service.settings import Settings
from tests.live_server import serving, throwaway_database
from tests.live_streams import OpenStream
from tests.pgbouncer import pgbouncer

USERS = 10
IDLE_STREAMS, IDLE_SECONDS = 1_000, 20
MODES = {
    "LISTEN, 1 worker": ({}, "api"),
    "LISTEN, 2 workers": ({"WEB_CONCURRENCY": "2"}, "api"),
    "notifications lost (safety poll), 1 worker": ({}, "sql"),
    "poll behind PgBouncer (no DB_LISTEN_URL), 1 worker": ({"DB_PGBOUNCER": "true"}, "api"),
}


def latencies(service, database, users: list[str], tokens: TokenVerifier, writes: int, via: str) -> list[float]:
    """Seconds from each write's answer (or commit, past the API) to its task on the user's stream."""
    streams = {user: OpenStream(service.base_url, user, tokens.mint(user)) for user in users}
    for stream in streams.values():
        stream.next_event(timeout=60)  # a loaded machine may take a while
    arrived: dict[str, float] = {}

    def collect(stream: OpenStream) -> None:
        while not stream.ended.is_set():
            with contextlib.suppress(Exception):
                moment, item = stream.next_item(timeout=0.5)
                if isinstance(item, dict):
                    arrived.update({task["title"]: moment for task in item["page"]["changes"]})

    for stream in streams.values():
        threading.Thread(target=collect, args=(stream,), daemon=True).start()
    answered: dict[str, float] = {}
    auth = {user: {"Authorization": f"Bearer {tokens.mint(user)}"} for user in users}
    clients = {user: httpx.Client(base_url=service.base_url, headers=auth[user]) for user in users}
    try:
        for n in range(writes):
            user, title = random.choice(users), f"write {n}"
            if via == "api":
                clients[user].post(f"/api/{user}/tasks", json={"title": title}).raise_for_status()
            else:
                asyncio.run(_insert(database, user, title))
            answered[title] = time.monotonic()
            time.sleep(random.uniform(0.02, 0.06))
        deadline = time.monotonic() + 30
        while len(arrived.keys() & answered.keys()) < writes and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for stream in streams.values():
            stream.close()
        for client in clients.values():
            client.close()
    missing = writes - len(arrived.keys() & answered.keys())
    if missing:
        raise RuntimeError(f"{missing} of {writes} writes never reached their stream")
    return [max(arrived[title] - answered[title], 0.0) for title in answered]


async def _insert(database, user: str, title: str) -> None:
    connection = await asyncpg.connect(listen_dsn(database.url))
    try:
        await connection.execute("INSERT INTO tasks (user_id, title) VALUES ($1, $2)", user, title)
    finally:
        await connection.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _open_idle(port: int, user: str, token: str) -> tuple[int, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET /api/{user}/tasks/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
    writer.write(request.encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split()[1])
    if status == 200:
        await reader.readuntil(b"\n\n")  # the first event: the stream is open and up to date
    else:
        body = await reader.read(2000)
        print(f"  {user}: {status} {body[-300:]!r}", flush=True)
    return status, writer


async def idle_cost(service, tokens: TokenVerifier, seconds: float = IDLE_SECONDS) -> dict:
    """RSS and CPU of the worker holding 1,000 streams that nothing happens on."""
    process = psutil.Process(service.pid)
    port = int(service.base_url.rsplit(":", 1)[1])
    before = process.memory_info().rss
    users = [f"idle-{n}" for n in range(IDLE_STREAMS // 10)]
    opening = asyncio.Semaphore(10)

    async def one(user: str):
        async with opening:
            return await _open_idle(port, user, tokens.mint(user))

    started = time.monotonic()
    opened = await asyncio.gather(*(one(user) for user in users for _ in range(10)))
    opening_seconds = time.monotonic() - started
    assert all(status == 200 for status, _ in opened), sorted({status for status, _ in opened})
    over, extra = await _open_idle(port, "idle-extra", tokens.mint("idle-extra"))
    extra.close()
    await asyncio.sleep(2)
    held = process.memory_info().rss
    cpu_before, wall_before = sum(process.cpu_times()[:2]), time.monotonic()
    await asyncio.sleep(seconds)
    cpu = (sum(process.cpu_times()[:2]) - cpu_before) / (time.monotonic() - wall_before)
    for _, writer in opened:
        writer.close()
    return {
        "streams": len(opened),
        "opened_in_seconds": round(opening_seconds, 1),
        "rss_before_mb": round(before / 2**20, 1),
        "rss_held_mb": round(held / 2**20, 1),
        "kb_per_stream": round((held - before) / 1024 / len(opened), 1),
        "cpu_seconds_per_second": round(cpu, 4),
        "idle_seconds": seconds,
        "one_more_answered": over,
    }


def measure(database, secret: str, writes: int, idle_seconds: float = IDLE_SECONDS) -> dict:
    tokens = TokenVerifier(Settings.from_env(database_url="unused", jwt_secret=secret))
    base = {"BETTER_AUTH_SECRET": secret, "RATE_LIMIT": "off", "VALIDATE_RESPONSES": "false", "LOG_LEVEL": "ERROR"}
    figures: dict = {"latency": {}}
    for index, (mode, (settings, via)) in enumerate(MODES.items()):
        users = [f"live-{index}-{n}" for n in range(USERS)]
        with contextlib.ExitStack() as stack:
            if settings.get("DB_PGBOUNCER"):
                settings = {**settings, "DATABASE_URL": stack.enter_context(pgbouncer(database))}
            service = stack.enter_context(serving(database, **base, **settings))
            seconds = latencies(service, database, users, tokens, writes, via)
        figures["latency"][mode] = {
            "writes": len(seconds),
            "p50_ms": round(percentile(seconds, 0.5) * 1000, 1),
            "p99_ms": round(percentile(seconds, 0.99) * 1000, 1),
            "max_ms": round(max(seconds) * 1000, 1),
            "mean_ms": round(statistics.mean(seconds) * 1000, 1),
        }
        print(f"  {mode:55} {figures['latency'][mode]}", flush=True)
    with serving(database, **base) as service:
        figures["idle"] = asyncio.run(idle_cost(service, tokens, idle_seconds))
    print(f"  idle streams: {figures['idle']}", flush=True)
    return figures


def markdown(figures: dict) -> str:
    lines = [
        "",
        "Live updates: from a write's 2xx (or its commit, past the API) to its event on an open stream of "
        f"the user ({USERS} users, one stream each, writes 20-60 ms apart; a negative time counts as 0):",
        "",
        "| mode | writes | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode, row in figures["latency"].items():
        lines.append(f"| {mode} | {row['writes']} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} |")
    idle = figures["idle"]
    lines += [
        "",
        f"{idle['streams']:,} idle streams on one worker (100 users x 10): RSS {idle['rss_before_mb']} -> "
        f"{idle['rss_held_mb']} MB ({idle['kb_per_stream']} KB per stream), CPU "
        f"{idle['cpu_seconds_per_second']} s per second over {idle['idle_seconds']} s with nothing to send "
        f"(keep-alive comments and the 1 s safety poll included); one more stream: {idle['one_more_answered']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=100)
    args = parser.parse_args()
    secret = "bench-live-" + "x" * 32
    with throwaway_database() as database:
        figures = measure(database, secret, args.writes)
    out = Path("build/bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "live.json").write_text(json.dumps(figures, indent=2))
    print(markdown(figures))


if __name__ == "__main__":
    main()
