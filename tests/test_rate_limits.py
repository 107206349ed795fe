"""Rate limits: a user over their rate and an address guessing tokens are slowed down with 429,
in one process or shared by several through a real Redis."""

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
from dataclasses import replace

import jwt
import pytest
from starlette.testclient import TestClient

from app import create_app
from service.rate_limit import FULL, NOT_AN_ADDRESS, FixedWindowCounters, RateLimiter, address_key
from tests.live_server import free_port, wait_until


@contextlib.contextmanager
def client_with(settings, **overrides):
    with TestClient(create_app(replace(settings, **overrides)), raise_server_exceptions=False) as client:
        yield client


def list_tasks(client, tokens, user_id: str):
    return client.get(f"/api/{user_id}/tasks", headers={"Authorization": f"Bearer {tokens.mint(user_id)}"})


def assert_rate_limited(response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "RATE_LIMITED"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["RateLimit-Remaining"] == "0"
    assert int(response.headers["RateLimit-Reset"]) <= 60


def test_a_user_over_their_rate_gets_429_and_others_do_not(settings, tokens):
    with client_with(settings, rate_limit="3/minute") as client:
        answers = [list_tasks(client, tokens, "busy-user") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
        assert all(a.headers["RateLimit-Limit"] == "3" for a in answers)
        assert_rate_limited(list_tasks(client, tokens, "busy-user"))
        assert list_tasks(client, tokens, "calm-user").status_code == 200


def test_an_address_guessing_tokens_gets_429_but_a_token_already_verified_still_works(settings, tokens):
    with client_with(settings, auth_failure_rate_limit="3/minute") as client:
        victim = {"Authorization": f"Bearer {tokens.mint('victim')}"}
        assert client.get("/api/victim/tasks", headers=victim).status_code == 200  # verified and remembered
        guesses = [client.get("/api/victim/tasks", headers={"Authorization": f"Bearer guess{i}"}) for i in range(3)]
        assert [g.status_code for g in guesses] == [401, 401, 401]
        assert_rate_limited(client.get("/api/victim/tasks", headers={"Authorization": "Bearer guess4"}))
        assert_rate_limited(client.get("/api/victim/tasks"))  # no token at all is a failure too
        assert client.get("/api/victim/tasks", headers=victim).status_code == 200


def test_an_address_over_its_failed_authentication_rate_costs_no_signature_check(settings, tokens, monkeypatch):
    with client_with(settings, auth_failure_rate_limit="3/minute") as client:
        for i in range(3):
            assert client.get("/api/victim/tasks", headers={"Authorization": f"Bearer guess{i}"}).status_code == 401
        verified = []
        monkeypatch.setattr(jwt, "decode", lambda *args, **kwargs: verified.append(args))
        assert_rate_limited(list_tasks(client, tokens, "victim"))  # a well-formed token, never looked at
        assert verified == []


def test_a_full_window_refuses_new_addresses_failures_checks_their_tokens_lets_users_through(settings):
    limiter = RateLimiter(
        replace(settings, auth_failure_rate_limit="30/minute", rate_limit="30/minute", rate_limit_max_keys=1)
    )

    async def story():
        assert await limiter.failed_authentication("192.0.2.1") is None  # the one address the window holds
        await limiter.refuse_failing_address("192.0.2.2")  # a valid token from it is still verified
        refusal = await limiter.failed_authentication("192.0.2.2")
        assert refusal is not None and refusal.status == 429
        await limiter.charge_user("first")  # the one user it holds
        for _ in range(40):
            await limiter.charge_user("second")  # let through, uncounted

    asyncio.run(story())


def test_a_window_is_dropped_whole_when_it_ends():
    now = [1000.0]
    counters = FixedWindowCounters(amount=2, seconds=60, max_keys=100, clock=lambda: now[0])
    for key in map(str, range(100)):
        asyncio.run(counters.hit(key))
    assert asyncio.run(counters.hit("0")) == (2, 1020.0)
    assert asyncio.run(counters.hit("new")) == (FULL, 1020.0)
    now[0] = 1020.0
    assert asyncio.run(counters.hit("new")) == (1, 1080.0)
    assert asyncio.run(counters.peek("0")) == (0, 1080.0)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:0:7::1", "2001:db8:0:7::/64"),
        ("2001:0DB8:0000:0007:ffff:0000:0000:0001", "2001:db8:0:7::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("x" * 30_000, NOT_AN_ADDRESS),
        ("testclient", NOT_AN_ADDRESS),
        (None, NOT_AN_ADDRESS),
    ],
)
def test_addresses_are_counted_as_addresses(host, key):
    assert address_key(host) == key


def test_rate_limits_can_be_turned_off(settings, tokens):
    with client_with(settings, rate_limit="off", auth_failure_rate_limit="off") as client:
        assert all(list_tasks(client, tokens, "tireless").status_code == 200 for _ in range(30))
        assert all(client.get("/api/x/tasks").status_code == 401 for _ in range(30))


@pytest.fixture(scope="module")
def redis_url():
    """A throwaway redis-server of this suite's own, on a free loopback port."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed: apt-get install redis-server"
    port = free_port()
    directory = tempfile.mkdtemp(prefix="tasks-redis-")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen([*command, "--dir", directory], stdout=subprocess.DEVNULL)
    try:
        ping = ["redis-cli", "-p", str(port), "ping"]
        wait_until(lambda: subprocess.run(ping, capture_output=True).stdout == b"PONG\n", "redis-server", server, 10)
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def test_processes_sharing_redis_share_the_counters(settings, tokens, redis_url):
    shared = {"rate_limit": "3/minute", "rate_limit_storage_url": redis_url}
    with client_with(settings, **shared) as first, client_with(settings, **shared) as second:
        assert list_tasks(first, tokens, "two-tabs").status_code == 200
        assert list_tasks(second, tokens, "two-tabs").status_code == 200
        assert list_tasks(first, tokens, "two-tabs").status_code == 200
        assert_rate_limited(list_tasks(second, tokens, "two-tabs"))


def test_a_counter_store_that_is_down_never_takes_the_api_down(settings, tokens):
    unreachable = f"redis://127.0.0.1:{free_port()}"
    with client_with(settings, rate_limit="1/minute", rate_limit_storage_url=unreachable) as client:
        assert [list_tasks(client, tokens, "lucky").status_code for _ in range(3)] == [200, 200, 200]
