"""Faults of the database are 503s with Retry-After that say what happened, never 500s, and a
restart under load loses no write the API acknowledged."""

import http.client
import json
import signal
import threading
import time
import urllib.parse
from collections import Counter

import psutil

from service.auth import TokenVerifier
from service.settings import Settings
from tests.live_server import serving, throwaway_database

WRITERS = 4


def token_for(service, user_id: str) -> str:
    settings = Settings.from_env({}, database_url="unused", jwt_secret=service.env["BETTER_AUTH_SECRET"])
    return TokenVerifier(settings).mint(user_id)


class Caller:
    """One keep-alive connection to the live service, as a user."""

    def __init__(self, service, user_id: str) -> None:
        self.netloc = urllib.parse.urlsplit(service.base_url).netloc
        self.user_id = user_id
        self.headers = {"Authorization": f"Bearer {token_for(service, user_id)}", "Content-Type": "application/json"}
        self.connection = http.client.HTTPConnection(self.netloc, timeout=30)

    def call(self, method: str, path: str = "", body: dict | None = None) -> tuple[int, dict, dict]:
        data = json.dumps(body) if body is not None else None
        try:
            self.connection.request(method, f"/api/{self.user_id}/tasks{path}", body=data, headers=self.headers)
            response = self.connection.getresponse()
            payload = response.read()
        except (ConnectionError, http.client.HTTPException):
            self.connection.close()
            self.connection = http.client.HTTPConnection(self.netloc, timeout=30)
            raise
        return response.status, response.headers, json.loads(payload) if payload else {}

    def all_task_ids(self) -> set[str]:
        ids, cursor = set(), None
        while True:
            status, _, page = self.call("GET", "?limit=200" + (f"&cursor={cursor}" if cursor else ""))
            assert status == 200, page
            ids |= {task["id"] for task in page["items"]}
            cursor = page["next_cursor"]
            if cursor is None:
                return ids


def test_a_restart_under_writes_gives_503s_never_500s_and_keeps_every_acknowledged_write():
    with (
        throwaway_database(durable=True) as database,
        serving(database, validate_responses=False, RATE_LIMIT="off", DB_CONNECT_TIMEOUT_SECONDS="1") as service,
    ):
        statuses: Counter = Counter()
        acknowledged: dict[str, set[str]] = {}
        stop = threading.Event()

        def write(user_id: str) -> None:
            caller, kept = Caller(service, user_id), set()
            acknowledged[user_id] = kept
            for n in range(2000):  # bounded in count and in time
                if stop.is_set():
                    return
                try:
                    status, headers, body = caller.call("POST", body={"title": f"write {n}"})
                except (ConnectionError, http.client.HTTPException):
                    statuses["connection error"] += 1
                    continue
                statuses[status] += 1
                if status == 201:
                    kept.add(body["id"])
                elif status == 503:
                    statuses[(headers.get("Retry-After"), body.get("code"), body.get("detail"))] += 1

        writers = [threading.Thread(target=write, args=(f"writer-{i}",)) for i in range(WRITERS)]
        for writer in writers:
            writer.start()
        time.sleep(1.0)
        database.stop(immediate=True)
        time.sleep(0.5)
        database.start()
        time.sleep(1.5)
        stop.set()
        for writer in writers:
            writer.join(30)

        assert statuses[503] > 0, f"the restart was not seen: {statuses}"
        assert {s for s in statuses if not isinstance(s, tuple)} <= {201, 503}, f"not 201 nor 503: {statuses}"
        problems = {problem for problem in statuses if isinstance(problem, tuple)}
        assert all(retry == "5" and code.startswith("DATABASE_") for retry, code, _ in problems), problems
        for user_id, kept in acknowledged.items():
            assert kept <= Caller(service, user_id).all_task_ids(), "an acknowledged write was lost"


def test_a_stalled_database_is_a_503_timeout_and_a_full_pool_a_503_busy():
    settings = {
        "RATE_LIMIT": "off",
        "DB_STATEMENT_TIMEOUT_SECONDS": "1",
        "DB_CONNECT_TIMEOUT_SECONDS": "0.5",
        "DB_POOL_SIZE": "1",
        "DB_MAX_OVERFLOW": "0",
    }
    with throwaway_database() as database, serving(database, validate_responses=False, **settings) as service:
        assert Caller(service, "patient").call("GET")[0] == 200  # the pool's one connection is open
        answers: list = []
        postgres = psutil.Process(database.process.pid)
        stalled = [postgres, *postgres.children()]  # each backend is a process group of its own
        for process in stalled:
            process.send_signal(signal.SIGSTOP)
        try:
            callers = [
                threading.Thread(target=lambda: answers.append(Caller(service, "patient").call("GET")))
                for _ in range(2)
            ]
            for caller in callers:
                caller.start()
                time.sleep(0.1)
            for caller in callers:
                caller.join(10)
        finally:
            for process in stalled:
                process.send_signal(signal.SIGCONT)
        codes = sorted(body["code"] for status, headers, body in answers if status == 503 and headers["Retry-After"])
        assert codes == ["DATABASE_BUSY", "DATABASE_TIMEOUT"], answers
        assert Caller(service, "patient").call("GET")[0] == 200, "it recovers when the database does"
