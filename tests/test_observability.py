"""What an operator watches: Prometheus metrics when asked for, and JSON log lines."""

import contextlib
import io
import json
import logging
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from app import create_app
from service.logs import JsonFormatter, TextFormatter
from service.request_context import RequestIdFilter, access_log

FORGED_LINE = "2026-11-30 12:00:00,000 INFO tasks.access [0123] GET /api/admin/tasks 200 1.0ms"
LINE_BREAKERS = ["\r\n", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@contextlib.contextmanager
def access_lines(formatter: logging.Formatter):
    """The access log's lines while the block runs, as `formatter` writes them."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter)
    access_log.addHandler(handler)
    level = access_log.level
    access_log.setLevel(logging.INFO)
    written: list[str] = []
    try:
        yield written
    finally:
        access_log.removeHandler(handler)
        access_log.setLevel(level)
        written.extend(lines.getvalue().splitlines())  # splits at every character in LINE_BREAKERS


def test_metrics_count_requests_by_operation_and_status_the_pool_and_refusals(settings, tokens):
    app = create_app(replace(settings, metrics_enabled=True, rate_limit="1/minute"))
    with TestClient(app, raise_server_exceptions=False) as client:
        auth = {"Authorization": f"Bearer {tokens.mint('watched')}"}
        assert client.get("/api/watched/tasks", headers=auth).status_code == 200
        assert client.get("/api/watched/tasks", headers=auth).status_code == 429
        headers = {**auth, "Content-Type": "application/json", "Content-Length": str(10**6)}
        assert client.post("/api/watched/tasks", content=b"{}", headers=headers).status_code == 413
        metrics = client.get("/metrics")  # no token: it is not part of the API
        assert metrics.status_code == 200
        text = metrics.text
        assert 'tasks_api_requests_total{operation="listTasks",status="200"}' in text
        assert 'tasks_api_requests_total{operation="listTasks",status="429"}' in text
        assert 'tasks_api_request_duration_seconds_bucket{le="0.1",operation="listTasks"}' in text
        assert 'tasks_api_requests_refused_total{reason="RATE_LIMITED"}' in text
        assert 'tasks_api_requests_refused_total{reason="BODY_TOO_LARGE"}' in text
        assert 'tasks_api_db_pool_connections{state="idle"}' in text


def test_metrics_are_off_unless_enabled(client):
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_json_logs_are_one_object_per_line_with_the_request_the_operation_and_the_user(alice):
    with access_lines(JsonFormatter()) as lines:
        response = alice.call("GET", headers={"X-Request-ID": "trace-me-123"})
    (line,) = lines
    entry = json.loads(line)
    assert entry["request_id"] == "trace-me-123" == response.headers["X-Request-ID"]
    assert (entry["operation_id"], entry["user_id"], entry["status"]) == ("listTasks", alice.id, 200)
    assert entry["method"] == "GET" and entry["path"] == f"/api/{alice.id}/tasks"
    assert entry["duration_ms"] >= 0 and entry["level"] == "INFO"


def test_metrics_enabled_in_one_app_stay_out_of_the_next(settings):
    """Each app builds its own middleware stack (Connexion inserts into the list it is given)."""
    create_app(replace(settings, metrics_enabled=True))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize("breaker", LINE_BREAKERS, ids=ascii)
def test_a_path_cannot_forge_a_line_of_the_text_log(client, breaker):
    """Unauthenticated: the path is logged percent-decoded, as the request's own line."""
    encoded = "".join(f"%{byte:02X}" for byte in breaker.encode())
    with access_lines(TextFormatter()) as lines:
        assert client.get(f"/x{encoded}{FORGED_LINE.replace(' ', '%20')}").status_code == 404
    (line,) = lines
    escaped = "".join(f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" for c in breaker)
    assert f"GET /x{escaped}{FORGED_LINE} 404 " in line


@pytest.mark.parametrize("breaker", LINE_BREAKERS, ids=ascii)
def test_a_path_cannot_forge_a_line_of_the_json_log(client, breaker):
    encoded = "".join(f"%{byte:02X}" for byte in breaker.encode())
    with access_lines(JsonFormatter()) as lines:
        client.get(f"/x{encoded}{FORGED_LINE.replace(' ', '%20')}")
    (line,) = lines
    assert json.loads(line)["path"] == f"/x{breaker}{FORGED_LINE}"
