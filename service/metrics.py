"""Prometheus metrics (the official prometheus-client), served at /metrics outside the API's
security when METRICS_ENABLED: requests by operationId and status, their latency, the database
pool, and requests refused by a limit, by reason. With several worker processes the counts of
all of them are summed (prometheus-client's multiprocess mode, set up by `cli.py serve`)."""

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Receive, Scope, Send

PATH = "/metrics"
REQUESTS = Counter("tasks_api_requests", "Requests answered, by operationId and status", ["operation", "status"])
LATENCY = Histogram(
    "tasks_api_request_duration_seconds",
    "Time to answer, by operationId",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REFUSED = Counter("tasks_api_requests_refused", "Requests refused by a limit, by problem code", ["reason"])
POOL = Gauge(
    "tasks_api_db_pool_connections", "Database connections of this pool", ["state"], multiprocess_mode="livesum"
)


def refused(reason: str) -> None:
    REFUSED.labels(reason).inc()


def _registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


class Metrics:
    """Counts every request and serves /metrics; `pool_of()` gives the engine's connection pool."""

    def __init__(self, app: ASGIApp, pool_of=lambda: None) -> None:
        self.app = app
        self.pool_of = pool_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == PATH:
            body = generate_latest(_registry())
            headers = [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("extensions", {})  # shared with Connexion, which names the operation in it
        status = 500
        started = time.perf_counter()

        async def send_counted(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            operation = scope["extensions"].get("connexion_routing", {}).get("operation_id") or "none"
            REQUESTS.labels(operation, str(status)).inc()
            LATENCY.labels(operation).observe(time.perf_counter() - started)
            pool = self.pool_of()
            if pool is not None:
                POOL.labels("in_use").set(pool.checkedout())
                POOL.labels("idle").set(pool.checkedin())
                POOL.labels("overflow").set(max(pool.overflow(), 0))
