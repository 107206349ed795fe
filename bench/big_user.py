"""What one user with 50,000 tasks costs per request: a search that matches nothing, a tag and
a due date no task has, a tag on every task, a tag only other users have, and a full sync page
by page, timed through the API one at a time (the PostgreSQL side is the point: before issue 14
each of these read every row of the user).

The service gets one database connection, and each query is asked five times before it is
timed: asyncpg keeps statements prepared per connection, and from the sixth run PostgreSQL may
serve one with a generic plan, so what is timed is what a busy service runs.

    python -m bench.big_user [--tasks 50000] [--repeat 5]

`bench/run.py` runs it after its cases, over its own database, and adds the table to its report."""

import argparse
import asyncio
import json
import statistics
import time
import urllib.parse
import urllib.request

import asyncpg

from db.engine import asyncpg_url
from service.auth import TokenVerifier
from service.settings import Settings
from tests.live_server import serving, throwaway_database

USER = "bench-50k"
WARM_UP = 5  # runs of a prepared statement that PostgreSQL plans for their values, before it may not
QUERIES = {
    "search that matches nothing (q = 'a' x 199 + 'b')": {"q": "a" * 199 + "b", "limit": "20"},
    "tag no task has": {"tag": "never", "limit": "20"},
    "tag every task has": {"tag": "home", "limit": "20"},
    "tag only other users have (20,000 of their tasks)": {"tag": "elsewhere", "limit": "20"},
    "due before any task": {"due_before": "2000-01-01T00:00:00Z", "limit": "20"},
}


async def seed(database_url: str, tasks: int) -> None:
    connection = await asyncpg.connect(asyncpg_url(database_url).replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute(
            "INSERT INTO tasks (user_id, title, description, tags, due_at) SELECT $1, "
            "'task ' || n || ' ' || repeat('a', 300), repeat('a', 900), ARRAY['home', 't' || (n % 50)], "
            "now() + n * interval '1 minute' FROM generate_series(1, $2::int) n",
            USER,
            tasks,
        )
        await connection.execute(
            "INSERT INTO tasks (user_id, title, tags) "
            "SELECT 'bench-other-' || (n % 2000), 'theirs', ARRAY['elsewhere'] FROM generate_series(1, 20000) n"
        )
        await connection.execute("ANALYZE tasks")
    finally:
        await connection.close()


def _get(base_url: str, token: str, path: str, params: dict) -> tuple[int, bytes, float]:
    url = f"{base_url}/api/{USER}/tasks{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), time.perf_counter() - started
    except urllib.error.HTTPError as error:
        return error.code, error.read(), time.perf_counter() - started


def measure(database, secret: str, repeat: int) -> dict[str, str]:
    """Median milliseconds per request of each query (after five untimed runs), and of a whole
    full sync (pages of 500)."""
    token = TokenVerifier(Settings.from_env({}, database_url="unused", jwt_secret=secret)).mint(USER)
    figures = {}
    settings = {"BETTER_AUTH_SECRET": secret, "RATE_LIMIT": "off", "DB_POOL_SIZE": "1"}
    with serving(database, validate_responses=False, **settings) as service:
        for name, params in QUERIES.items():
            for _ in range(WARM_UP):
                _get(service.base_url, token, "", params)
            results = [_get(service.base_url, token, "", params) for _ in range(repeat)]
            statuses = {status for status, _, _ in results}
            median = statistics.median(seconds for _, _, seconds in results) * 1000
            figures[name] = f"{median:,.1f} ms" + ("" if statuses == {200} else f" (answers {sorted(statuses)})")
        started, pages, since = time.perf_counter(), 0, None
        while True:
            status, body, _ = _get(
                service.base_url, token, "/changes", {"limit": "500", **({"since": since} if since else {})}
            )
            assert status == 200, body[:200]
            page = json.loads(body)
            pages, since = pages + 1, page["next_since"]
            if not page["has_more"]:
                break
        figures[f"full sync, {pages} pages of 500"] = f"{(time.perf_counter() - started) * 1000:,.0f} ms"
    return figures


def markdown(tasks: int, figures: dict[str, str]) -> str:
    lines = [f"\n## One user with {tasks:,} tasks (median of sequential requests)\n", "| request | time |", "|---|---|"]
    return "\n".join(lines + [f"| {name} | {value} |" for name, value in figures.items()]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with throwaway_database() as database:
        asyncio.run(seed(database.url, args.tasks))
        print(markdown(args.tasks, measure(database, "bench-" + "b" * 40, args.repeat)))


if __name__ == "__main__":
    main()
