"""What an operator relies on: probes, request ids in headers and logs, outages, config."""

import logging
import re
import subprocess
import sys
import time

import pytest

from cli import PROJECT
from service.settings import ConfigError, Settings


def test_health_answers_without_a_token(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_probes_take_no_parameters(client):
    response = client.get("/health", params={"verbose": "1"})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"in": "query", "name": "verbose", "message": "is not a parameter of this operation"}
    ]


def test_ready_when_the_database_answers(client):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_every_response_carries_a_request_id_that_is_also_in_the_problem_and_the_log(client, caplog):
    with caplog.at_level(logging.INFO, logger="tasks.access"):
        response = client.get("/api/someone/tasks")
    request_id = response.headers["X-Request-ID"]
    assert len(request_id) == 32
    assert response.json()["request_id"] == request_id
    assert any(record.request_id == request_id for record in caplog.records if record.name == "tasks.access")


def test_a_sane_request_id_from_the_caller_is_kept(client):
    response = client.get("/health", headers={"X-Request-ID": "trace-42.a:b"})
    assert response.headers["X-Request-ID"] == "trace-42.a:b"


@pytest.mark.parametrize("offered", ["", "has space", "x" * 129, 'quote"d', "new\\nline"])
def test_an_insane_request_id_is_replaced(client, offered):
    response = client.get("/health", headers={"X-Request-ID": offered})
    assert response.headers["X-Request-ID"] != offered
    assert len(response.headers["X-Request-ID"]) == 32


def test_a_path_with_a_line_break_matches_no_route_and_says_so(client):
    response = client.get("/api/a%0Ab/tasks")
    assert response.status_code == 404, "declared on every /api operation"
    assert response.json()["code"] == "NOT_FOUND"


def test_unknown_paths_and_methods_are_problems(client):
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "NOT_FOUND"
    wrong_method = client.post("/health")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/alice/tasks", "GET, HEAD, POST"),
        ("/api/alice/tasks/0b6f5c1e-6c1a-4a53-9f3e-7d2a2f1c9b10", "DELETE, GET, HEAD, PATCH, PUT"),
        ("/api/alice/tasks/0b6f5c1e-6c1a-4a53-9f3e-7d2a2f1c9b10/complete", "PATCH"),
    ],
)
def test_a_405_lists_every_method_the_contract_declares_for_the_path(client, path, allow):
    response = client.request("OPTIONS", path)
    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"


def test_503_while_the_database_is_down_and_recovery_without_a_restart(database, alice, client):
    if database.server is None:
        pytest.skip("TEST_DATABASE_URL points at a server this suite does not control")
    task = alice.create_task(title="survives the outage")
    database.server.stop()
    try:
        for response in (
            alice.call("GET"),
            alice.call("POST", json={"title": "lost?"}),
            alice.call("GET", f"/{task['id']}"),
            client.get("/ready"),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "5"
            assert response.json()["code"] == "DATABASE_UNAVAILABLE"
        assert client.get("/health").status_code == 200
    finally:
        database.server.start()
    deadline = time.monotonic() + 10  # a pooler in between retries its server after a second
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "the service did not recover within 10 s of the database"
        time.sleep(0.2)
    titles = [item["title"] for item in alice.list_tasks()["items"]]
    assert titles == ["survives the outage"], "the write refused during the outage must not appear"


def test_cors_lets_the_configured_frontend_in(settings):
    from dataclasses import replace

    from starlette.testclient import TestClient

    from app import create_app

    app = create_app(replace(settings, cors_origins=("http://localhost:3000",)))
    with TestClient(app) as frontend:
        preflight = frontend.options(
            "/api/alice/tasks",
            headers={
                "Origin": "http://localhost:3000",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert preflight.headers["X-Request-ID"], "every response, preflights too, carries a request id"
        # What the contract uses, derived from it: its methods, the bearer token, a JSON body and
        # its header parameters.
        assert preflight.headers["access-control-allow-methods"] == "DELETE, GET, PATCH, POST, PUT"
        assert (
            preflight.headers["access-control-allow-headers"]
            == "Accept, Accept-Language, Authorization, Content-Language, Content-Type, "
            "Idempotency-Key, If-Match, If-None-Match, Last-Event-ID"
        )
        answer = frontend.get("/api/alice/tasks", headers={"Origin": "http://localhost:3000"})
        exposed = set(answer.headers["access-control-expose-headers"].split(", "))
        assert exposed == {
            "ETag", "Idempotent-Replayed", "Location", "Retry-After", "WWW-Authenticate", "X-Request-ID",
            "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "X-Accel-Buffering",
        }  # fmt: skip
        stranger = frontend.get("/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "postgresql://x/y"}, "Nothing verifies tokens"),
        ({"DATABASE_URL": "postgresql://x/y", "BETTER_AUTH_SECRET": "short"}, "shorter than 32 bytes"),
        ({"BETTER_AUTH_SECRET": "s" * 32}, "DATABASE_URL is not set"),
    ],
)
def test_the_service_refuses_to_start_without_proper_configuration(env, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (
            "postgres://u:p@ep-x-pooler.example/db?sslmode=require&channel_binding=require",
            "postgresql+asyncpg://u:p@ep-x-pooler.example/db?ssl=require",
        ),
        ("postgresql://u@localhost:5433/db", "postgresql+asyncpg://u@localhost:5433/db"),
        ("postgresql+asyncpg://u@/db?host=/tmp/pg", "postgresql+asyncpg://u@/db?host=%2Ftmp%2Fpg"),
    ],
)
def test_database_urls_are_taken_as_providers_give_them(given, used):
    from db.engine import asyncpg_url

    assert asyncpg_url(given) == used


def test_jwt_secret_is_accepted_as_an_alias():
    settings = Settings.from_env({"DATABASE_URL": "postgresql://x/y", "JWT_SECRET": "j" * 32})
    assert settings.jwt_secret == "j" * 32


def test_serve_says_what_is_missing_in_one_line_and_never_shows_the_secret():
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgresql://x/y", "BETTER_AUTH_SECRET": "tooshort-secret"}
    result = subprocess.run(
        [sys.executable, "cli.py", "serve"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("tasks-api:")]
    assert lines == ["tasks-api: BETTER_AUTH_SECRET is shorter than 32 bytes: use a longer secret."]
    assert "tooshort-secret" not in result.stderr + result.stdout


def test_a_method_the_change_feed_does_not_declare_is_405_not_a_task_id(alice):
    response = alice.call("PUT", "/changes", json={"title": "x"})
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"


def test_serving_requests_compiles_no_new_validators(alice):
    """Validators are compiled once per schema; a request must not leave one behind (a 204's
    missing schema once did: one more cached validator per delete, without end)."""
    from service.contract.validation import compiled_validators

    def every_operation():
        task = alice.create_task()
        alice.call("GET", f"/{task['id']}")
        alice.call("PATCH", f"/{task['id']}/complete")
        alice.call("GET", f"/{task['id']}", headers={"If-None-Match": task["etag"]})
        alice.call("GET", "/changes")
        alice.call("DELETE", f"/{task['id']}")

    every_operation()
    compiled = compiled_validators()
    for _ in range(20):
        every_operation()
    assert compiled_validators() == compiled
