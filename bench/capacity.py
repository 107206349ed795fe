"""The capacity model's inputs: the database's CPU time per request beside the API's, on one
PostgreSQL or on a Citus cluster (`bench.run --citus`), and what they come to per core.

The database's CPU is read from /proc through psutil: each server's postmaster, its live
children (backends, background workers) and the children it has reaped (a backend that ended
during the run), so a connection closed mid-run still counts."""

import contextlib
from collections.abc import Iterator

import psutil

from cli import migrate
from db.local_server import LocalPostgres
from tests.citus import citus_cluster
from tests.live_server import throwaway_database

MIX = {  # the share of each single-operation case in "mixed 80/20 over 100 users" (bench/run.py)
    "get one task": 0.5,
    "list 20 tasks, first page of 20": 0.3,
    "update a task": 0.1,
    "complete / reopen a task": 0.1,
}
MIXED = "mixed 80/20 over 100 users"
USAGE_PER_USER_PER_DAY = 300  # requests, the stated usage of the model
PEAK_TO_AVERAGE = 10


@contextlib.contextmanager
def database(citus: bool) -> Iterator[tuple[LocalPostgres, list[LocalPostgres]]]:
    """The server the API talks to, migrated, and every server whose CPU is the database's:
    one throwaway PostgreSQL, or a Citus coordinator and its two workers."""
    if not citus:
        with throwaway_database() as server:
            yield server, [server]
        return
    with citus_cluster() as cluster:
        migrate(cluster.url)
        yield cluster.coordinator, cluster.nodes


def cpu_seconds(servers: list[LocalPostgres]) -> list[float]:
    """Each server's CPU seconds so far, in the order given (the coordinator first on Citus)."""
    return [_server_cpu_seconds(server) for server in servers]


def _server_cpu_seconds(server: LocalPostgres) -> float:
    postmaster = psutil.Process(server.process.pid)
    times = postmaster.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in postmaster.children():
        with contextlib.suppress(psutil.NoSuchProcess):  # ended meanwhile: the reaped times have it
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


def per_core(cpu_ms_per_request: float) -> float:
    """Requests/s one core serves at that cost, flat out."""
    return 1000 / cpu_ms_per_request if cpu_ms_per_request > 0 else float("inf")


def markdown(rows: list[dict], citus: bool) -> str:
    """Per case: the API's and the database's CPU per request, requests/s per core of each, and
    users per core of each at the stated usage and peak."""
    peak_per_user = USAGE_PER_USER_PER_DAY / 86_400 * PEAK_TO_AVERAGE
    database = "Citus (coordinator + 2 workers)" if citus else "PostgreSQL"
    lines = [
        "",
        f"Capacity inputs: the API's CPU and {database}'s CPU per request (all its processes, from /proc); "
        f"users per core at {USAGE_PER_USER_PER_DAY} requests per user per day with a peak {PEAK_TO_AVERAGE}x "
        f"the average ({peak_per_user:.3f} requests/s per user at peak).",
        "",
        "| case | API req/s | API CPU ms/req | DB CPU ms/req | req/s per API core | req/s per DB core "
        "| users per API core | users per DB core |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        api = row["tasks-api"]
        api_ms, db_ms = api["cpu_ms_per_request"], api["db_cpu_ms_per_request"]
        coordinator = f" (coordinator {api['coordinator_cpu_ms_per_request']:.2f})" if citus else ""
        lines.append(
            f"| {row['case']} | {api['requests_per_second']:,.0f} | {api_ms:.2f} | {db_ms:.2f}{coordinator} | "
            f"{per_core(api_ms):,.0f} | {per_core(db_ms):,.0f} | "
            f"{per_core(api_ms) / peak_per_user:,.0f} | {per_core(db_ms) / peak_per_user:,.0f} |"
        )
    return "\n".join(lines + check(rows)) + "\n"


def check(rows: list[dict]) -> list[str]:
    """The model against a case it was not built from: the mixed load's CPU per request predicted
    from the single operations' (weighted by the mix), and its throughput as the API's one
    process bounds it (a core's worth of CPU), beside what was measured."""
    by_case = {row["case"]: row["tasks-api"] for row in rows}
    if MIXED not in by_case or not all(case in by_case for case in MIX):
        return []
    predicted = {
        key: sum(share * by_case[case][key] for case, share in MIX.items())
        for key in ("cpu_ms_per_request", "db_cpu_ms_per_request")
    }
    measured = by_case[MIXED]
    return [
        "",
        f"Check, {MIXED} (not an input): API CPU ms/req predicted {predicted['cpu_ms_per_request']:.2f}, measured "
        f"{measured['cpu_ms_per_request']:.2f}; DB CPU ms/req predicted {predicted['db_cpu_ms_per_request']:.2f}, "
        f"measured {measured['db_cpu_ms_per_request']:.2f}; requests/s if the API's process had a core to itself, "
        f"predicted {per_core(predicted['cpu_ms_per_request']):,.0f}; measured {measured['requests_per_second']:,.0f}.",
    ]
