"""What an operator watches: Prometheus metrics when asked for, and JSON log lines."""

import io
import json
import logging
from dataclasses import replace

from starlette.testclient import TestClient

from app import create_app
from service.logs import JsonFormatter
from service.request_context import RequestIdFilter, access_log


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
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    access_log.addHandler(handler)
    level = access_log.level
    access_log.setLevel(logging.INFO)
    try:
        response = alice.call("GET", headers={"X-Request-ID": "trace-me-123"})
    finally:
        access_log.removeHandler(handler)
        access_log.setLevel(level)
    (line,) = lines.getvalue().splitlines()
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
