"""The stable cost figure: CPU time per request of the app itself, in one process, no network,
against the floor (`bench/floor.py`) measured the same way in the same run.

    python -m bench.cost [--requests 500] [--rounds 7] [--calls]

Builds the app with production settings over a throwaway PostgreSQL, seeds a user with 20
tasks, logs as `cli.py serve` does (an access log line per request, written to /dev/null), and
calls the ASGI app directly (lifespan included) with the list request the wrk benchmark sends,
timing each round of requests with the process's CPU clock (all its threads, the log writer's
included: each round ends with a tenth of a second for it to write). The floor's rounds
alternate with the API's. The best round is each one's figure: on a shared machine, other load
can only make a round slower, never faster. The database server's own work is in another
process and not counted.

With `--calls`, one more round runs under cProfile and the figure is the number of function
calls (Python and C) per API request: not a time, but it does not move with the machine's load,
so two commits can be compared on a busy machine where CPU time cannot."""

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app import create_app
from bench import floor
from service.auth import TokenVerifier
from service.logs import configure_logging
from service.settings import Settings
from tests.live_server import throwaway_database

USER = "cost-user"


async def seed(database_url: str) -> None:
    engine = create_async_engine(database_url)
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO tasks (user_id, title) SELECT :user, 'task ' || n FROM generate_series(1, 20) n"),
            {"user": USER},
        )
    await engine.dispose()


class Lifespan:
    """Runs the app's lifespan in the background, as a server does."""

    def __init__(self, app) -> None:
        self.app = app
        self.state: dict = {}  # what the app's lifespan yields; each request gets a copy
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()

    async def __aenter__(self):
        lifespan = {"type": "lifespan", "state": self.state}
        self.task = asyncio.create_task(self.app(lifespan, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        assert (await self.outbox.get())["type"] == "lifespan.startup.complete"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        await self.task


async def measure(database_url: str, requests: int, rounds: int, *, calls: bool = False) -> dict[str, list[float]]:
    """CPU microseconds per request, one figure per round, of the API ("tasks-api") and of the
    floor ("floor"); with `calls`, "calls": the function calls per API request of one more round."""
    settings = Settings.from_env({}, database_url=database_url, jwt_secret="c" * 40, rate_limit="off")
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the log handler writes to it for the process's life
    with contextlib.redirect_stderr(devnull):
        configure_logging(settings.log_level, settings.log_format)
    token = TokenVerifier(settings).mint(USER).encode()
    os.environ.update(DATABASE_URL=database_url, BETTER_AUTH_SECRET=settings.jwt_secret)  # the floor's settings
    apps = {"tasks-api": create_app(settings), "floor": floor.app}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/api/{USER}/tasks",
        "raw_path": f"/api/{USER}/tasks".encode(),
        "query_string": b"limit=20",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"authorization", b"Bearer " + token)],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def one_request(app, state: dict) -> None:
        statuses = []

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app({**scope, "state": dict(state)}, receive, send)
        assert statuses == [200], statuses

    async def one_round(app, state: dict) -> float:
        started = time.process_time()
        for _ in range(requests):
            await one_request(app, state)
        await asyncio.sleep(0.1)  # the log writer's turn, counted
        return (time.process_time() - started) / requests * 1e6

    async with Lifespan(apps["tasks-api"]) as api, Lifespan(apps["floor"]) as reference:
        states = {"tasks-api": api.state, "floor": reference.state}
        for name, app in apps.items():
            for _ in range(50):  # warm up: validators compiled, connections opened, token verified
                await one_request(app, states[name])
        results: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(rounds):
            for name, app in apps.items():
                results[name].append(await one_round(app, states[name]))
        if calls:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(requests):
                await one_request(apps["tasks-api"], states["tasks-api"])
            profile.disable()
            results["calls"] = [pstats.Stats(profile).total_calls / requests]
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", action="store_true", help="also count function calls per request")
    args = parser.parse_args()
    with throwaway_database() as database:
        asyncio.run(seed(database.url))
        results = asyncio.run(measure(database.url, args.requests, args.rounds, calls=args.calls))
    if args.calls:
        print(f"Function calls per list request of the API, in process: {results['calls'][0]:.0f}")
    api, reference = results["tasks-api"], results["floor"]
    print(f"CPU per list request, in process: best {min(api):.0f} us, rounds {[round(r) for r in api]}")
    print(f"The floor's, the same way: best {min(reference):.0f} us, rounds {[round(r) for r in reference]}")
    print(f"The API against the floor: {min(api) / min(reference):.2f}x")


if __name__ == "__main__":
    main()
