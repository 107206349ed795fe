"""Live updates: a frontend holds `GET /tasks/events` open and sees every change of its user,
made by any tab, device or server process, soon after it commits, in order, never one missed,
whatever cuts the stream off; nobody else's."""

import asyncio
import contextlib
import queue
import random
import signal
import socket
import threading
import time
import uuid

import asyncpg
import httpx
import orjson
import pytest

from db.changes import decode_since
from db.listener import BATCH_SECONDS, NOTIFY, ChangeListener, listen_dsn
from service.auth import TokenVerifier
from service.settings import Settings
from tests.live_server import serving, throwaway_database
from tests.live_streams import OpenStream, events_of, revision_of
from tests.pgbouncer import pgbouncer
from tests.test_change_feed import forget_deletions

# --- in process: what the stream says, before and as it starts ---------------------------------


def stream_whole(user, headers=None, **params) -> tuple[httpx.Response, list]:
    """The stream as the test client reads it: whole, since the suite's streams end in 0.3 s."""
    response = user.client.get(f"/api/{user.id}/tasks/events", headers={**user.auth, **(headers or {})}, params=params)
    items = list(events_of(iter(response.text.split("\n")))) if response.status_code == 200 else []
    return response, [item for item in items if isinstance(item, dict)]


def test_a_stream_opens_with_the_feed_as_it_is_now_and_the_headers_proxies_need(alice):
    tasks = [alice.create_task(title=f"task {n}") for n in range(2)]
    response, events = stream_whole(alice)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["cache-control"] == "no-store"
    first = events[0]
    assert first["event"] == "changes" and first["retry"] == 1000
    feed = alice.call("GET", "/changes").json()
    assert first["page"] == feed, "the first event is the page GET /changes answers"
    assert first["id"] == feed["next_since"]
    assert [task["id"] for task in first["page"]["changes"]] == [task["id"] for task in tasks]


def test_a_bearer_header_spaced_as_connexion_allows_streams_and_keeps_no_place(alice):
    """`Bearer<TAB>token` passes the security check; it once broke the stream after it had taken
    one of the user's places for good (10 such calls: every later stream 429)."""
    for _ in range(12):
        response, events = stream_whole(alice, headers={"Authorization": f"Bearer\t{alice.token}"})
        assert response.status_code == 200 and events[0]["event"] == "changes"


def test_an_up_to_date_client_gets_one_empty_event_at_once(alice):
    alice.create_task()
    token = alice.call("GET", "/changes").json()["next_since"]
    _, events = stream_whole(alice, since=token)
    assert [event["page"]["changes"] for event in events] == [[]]
    assert events[0]["id"] == token


def test_last_event_id_wins_over_since_as_a_reconnecting_browser_sends_both(alice):
    first = alice.create_task(title="seen")
    token_after_first = alice.call("GET", "/changes").json()["next_since"]
    second = alice.create_task(title="new")
    _, events = stream_whole(alice, headers={"Last-Event-ID": token_after_first}, since="cjA")
    assert [task["id"] for task in events[0]["page"]["changes"]] == [second["id"]]
    assert first["id"] != second["id"]


def test_a_full_sync_comes_page_by_page_with_ids_that_increase(alice):
    for n in range(5):
        alice.create_task(title=f"task {n}")
    _, events = stream_whole(alice, limit=2)
    assert [len(event["page"]["changes"]) for event in events] == [2, 2, 1]
    assert [event["page"]["has_more"] for event in events] == [True, True, False]
    revisions = [revision_of(event) for event in events]
    assert revisions == sorted(set(revisions))


def test_a_token_past_the_deletions_horizon_is_410_before_any_event(alice, settings):
    doomed = alice.create_task()
    old_token = alice.call("GET", "/changes").json()["next_since"]
    alice.call("DELETE", f"/{doomed['id']}")
    forget_deletions(settings)
    response, _ = stream_whole(alice, headers={"Last-Event-ID": old_token})
    assert response.status_code == 410
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "SYNC_TOKEN_EXPIRED"


def test_a_last_event_id_the_service_did_not_make_is_400(alice):
    response, _ = stream_whole(alice, headers={"Last-Event-ID": "bm9wZQ"})
    assert response.status_code == 400 and response.json()["code"] == "INVALID_SYNC_TOKEN"
    response, _ = stream_whole(alice, headers={"Last-Event-ID": "not a token"})
    assert response.status_code == 400 and response.json()["code"] == "VALIDATION_FAILED"


def test_someone_elses_stream_is_403_and_no_token_is_401(alice, bob):
    assert alice.client.get(f"/api/{bob.id}/tasks/events", headers=alice.auth).status_code == 403
    assert alice.client.get(f"/api/{alice.id}/tasks/events").status_code == 401


# --- over HTTP: the service as it runs ------------------------------------------------------------


def tokens_for(service) -> TokenVerifier:
    return TokenVerifier(Settings.from_env(database_url="unused", jwt_secret=service.env["BETTER_AUTH_SECRET"]))


class Caller:
    """A user of a live service: a token, a client, the tasks calls."""

    def __init__(self, service, user_id: str, *, token_seconds: int = 3600) -> None:
        self.service, self.id = service, user_id
        self.tokens = tokens_for(service)
        self.token = self.tokens.mint(user_id, lifetime_seconds=token_seconds)
        self.http = httpx.Client(base_url=service.base_url, headers={"Authorization": f"Bearer {self.token}"})

    def create(self, title: str = "A task") -> dict:
        response = self.http.post(f"/api/{self.id}/tasks", json={"title": title})
        assert response.status_code == 201, response.text
        return response.json()

    def stream(self, **kwargs) -> OpenStream:
        return OpenStream(self.service.base_url, self.id, self.token, **kwargs)


@pytest.fixture
def make_user_id():
    return lambda prefix: f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def live_database():
    with throwaway_database() as server:
        yield server


@pytest.fixture(scope="module")
def api(live_database):
    settings = {"STREAM_KEEPALIVE_SECONDS": "0.5", "LIVE_SAFETY_POLL_SECONDS": "1", "RATE_LIMIT": "off"}
    with serving(live_database, **settings) as service:
        yield service


def sql(database, statement: str, *args):
    async def run():
        connection = await asyncpg.connect(listen_dsn(database.url))
        try:
            return await connection.fetch(statement, *args)
        finally:
            await connection.close()

    return asyncio.run(run())


def arrival_after_write(stream: OpenStream, write) -> tuple[float, dict]:
    """Seconds from a write's answer to its event on `stream`, and the event."""
    written = write()
    answered = time.monotonic()
    while True:
        arrived, item = stream.next_item(timeout=10)
        if isinstance(item, dict):
            return arrived - answered, item | {"written": written}


def test_a_change_reaches_every_open_stream_of_the_user_and_no_one_elses(api, make_user_id):
    alice, bob = Caller(api, make_user_id("alice")), Caller(api, make_user_id("bob"))
    with alice.stream() as tab, alice.stream() as other_tab, bob.stream() as bobs:
        for stream in (tab, other_tab, bobs):
            assert stream.next_event()["page"]["changes"] == []
        seconds, event = arrival_after_write(tab, lambda: alice.create(title="from another device"))
        assert [task["title"] for task in event["page"]["changes"]] == ["from another device"]
        assert seconds < 2.0, f"{seconds:.3f} s from the write's answer to the event"
        assert other_tab.next_event()["page"] == event["page"]
        with pytest.raises(queue.Empty):
            bobs.next_event(timeout=1.5)


def test_an_idle_stream_gets_a_comment_before_proxies_give_up_on_it(api, make_user_id):
    alice = Caller(api, make_user_id("alice"))
    with alice.stream() as stream:
        stream.next_event()
        started = time.monotonic()
        _, item = stream.next_item(timeout=5)
        assert item == ": keep-alive"
        assert time.monotonic() - started < 3, "STREAM_KEEPALIVE_SECONDS is 0.5 here"


def test_a_change_written_behind_the_apis_back_arrives_by_the_safety_poll(api, live_database, make_user_id):
    """No NOTIFY is sent for it: only the poll of revision counters can find it."""
    alice = Caller(api, make_user_id("alice"))
    with alice.stream() as stream:
        stream.next_event()
        seconds, event = arrival_after_write(
            stream, lambda: sql(live_database, "INSERT INTO tasks (user_id, title) VALUES ($1, 'by hand')", alice.id)
        )
        assert [task["title"] for task in event["page"]["changes"]] == ["by hand"]
        assert seconds < 4.0, f"LIVE_SAFETY_POLL_SECONDS is 1: {seconds:.3f} s"


def test_a_burst_of_writes_is_announced_in_a_few_statements_and_every_user_is_heard(live_database, monkeypatch):
    """Under load, one NOTIFY statement per write would cost this process a wake-up and a round
    trip per write: what comes in while one is sent waits, up to BATCH_SECONDS, for the next."""
    users = [f"burst_{uuid.uuid4().hex[:8]}_{n}" for n in range(1000)]
    statements = []
    execute = asyncpg.Connection.execute

    async def counted(connection, query, *args, **kwargs):
        if query == NOTIFY:
            statements.append(len(args[0]))
        return await execute(connection, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", counted)

    async def burst() -> tuple[set, float]:
        heard: set[str] = set()
        listener = ChangeListener(live_database.url, on_change=heard.add, on_reconnect=lambda: None)
        running = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.connected.wait(), 10)
            started = time.monotonic()
            for n, user in enumerate(users):  # a write every 0.1 ms or so, for 0.1 s or more
                listener.changed(user)
                if n % 10 == 9:
                    await asyncio.sleep(0.001)
            seconds = time.monotonic() - started
            deadline = time.monotonic() + 10
            while not heard.issuperset(users) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return heard, seconds
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    heard, seconds = asyncio.run(burst())
    assert heard.issuperset(users)
    assert sum(statements) == len(users)
    assert len(statements) <= seconds / BATCH_SECONDS + 2, f"{len(statements)} statements in {seconds:.3f} s"


def test_a_dropped_listener_comes_back_and_its_streams_read_what_they_missed(api, live_database, make_user_id):
    alice = Caller(api, make_user_id("alice"))
    listeners = "SELECT pid FROM pg_stat_activity WHERE application_name = 'tasks-api-listener'"
    with alice.stream() as stream:
        stream.next_event()
        [dropped] = sql(live_database, listeners)
        sql(live_database, "SELECT pg_terminate_backend($1)", dropped["pid"])
        seconds, event = arrival_after_write(stream, lambda: alice.create(title="while nobody listened"))
        assert [task["title"] for task in event["page"]["changes"]] == ["while nobody listened"]
        assert seconds < 4.0
        deadline = time.monotonic() + 10
        while not (pids := sql(live_database, listeners)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [row["pid"] for row in pids] != [dropped["pid"]] and len(pids) == 1
        seconds, _ = arrival_after_write(stream, lambda: alice.create(title="listening again"))
        assert seconds < 2.0


def test_a_stream_ends_when_its_token_expires(api, make_user_id):
    alice = Caller(api, make_user_id("alice"), token_seconds=2)
    started = time.monotonic()
    with alice.stream() as stream:
        stream.next_event()
        assert stream.ended.wait(10), "the stream outlived its token"
        assert time.monotonic() - started < 4
        assert stream.error is None, "it ended cleanly, with the last chunk"


def test_streams_are_limited_per_user_and_per_process_with_problems(live_database, make_user_id):
    with serving(live_database, STREAMS_PER_USER="2", STREAMS_PER_WORKER="3", RATE_LIMIT="off") as service:
        alice, bob = Caller(service, make_user_id("alice")), Caller(service, make_user_id("bob"))
        with contextlib.ExitStack() as open_streams:
            for _ in range(2):
                open_streams.enter_context(alice.stream()).next_event()
            third = alice.stream()
            assert third.status == 429 and third.response.json()["code"] == "TOO_MANY_STREAMS"
            assert third.response.headers["retry-after"] == "5"
            open_streams.enter_context(bob.stream()).next_event()
            full = bob.stream()
            assert full.status == 503 and full.response.json()["code"] == "STREAMS_FULL"
            assert full.response.headers["retry-after"] == "5"
        deadline = time.monotonic() + 5  # closed streams give their places back
        while (again := alice.stream()).status != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert again.status == 200
        again.close()


def test_a_write_served_by_one_process_reaches_a_stream_held_by_another(live_database, make_user_id):
    # The holder's safety poll is far off: only its listener can bring the change in time.
    with (
        serving(live_database, RATE_LIMIT="off", LIVE_SAFETY_POLL_SECONDS="60") as one,
        serving(live_database, RATE_LIMIT="off") as other,
    ):
        assert one.pid != other.pid
        holder = Caller(one, make_user_id("alice"))
        writer = Caller(other, holder.id)
        with holder.stream() as stream:
            stream.next_event()
            seconds, event = arrival_after_write(stream, lambda: writer.create(title="from the other process"))
            assert [task["title"] for task in event["page"]["changes"]] == ["from the other process"]
            assert seconds < 5, f"{seconds:.3f} s"


def test_ids_are_the_feeds_tokens(api, make_user_id):
    alice = Caller(api, make_user_id("alice"))
    with alice.stream() as stream:
        first = stream.next_event()
        alice.create()
        second = stream.next_event()
        assert decode_since(second["id"]) > decode_since(first["id"])
        assert orjson.loads(second["data"]) == second["page"]


def test_behind_pgbouncer_without_a_direct_url_streams_poll_through_the_pooler(make_user_id):
    listeners = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tasks-api-listener'"
    with (
        throwaway_database() as live_database,  # its own: no other server's listener on it
        pgbouncer(live_database) as pooled_url,
        serving(live_database, DATABASE_URL=pooled_url, DB_PGBOUNCER="true", RATE_LIMIT="off") as service,
    ):
        alice = Caller(service, make_user_id("alice"))
        with alice.stream() as stream:
            stream.next_event()
            assert sql(live_database, listeners)[0]["count"] == 0, "no LISTEN through a transaction pooler"
            seconds, event = arrival_after_write(stream, lambda: alice.create(title="polled"))
            assert [task["title"] for task in event["page"]["changes"]] == ["polled"]
            assert seconds < 3, f"LIVE_POLL_SECONDS is 0.25: {seconds:.3f} s"


def test_behind_pgbouncer_a_direct_listen_url_carries_the_listener(live_database, make_user_id):
    settings = {"DB_PGBOUNCER": "true", "DB_LISTEN_URL": live_database.url, "LIVE_SAFETY_POLL_SECONDS": "60"}
    with (
        pgbouncer(live_database) as pooled_url,
        serving(live_database, DATABASE_URL=pooled_url, RATE_LIMIT="off", **settings) as service,
    ):
        alice = Caller(service, make_user_id("alice"))
        with alice.stream() as stream:
            stream.next_event()
            seconds, event = arrival_after_write(stream, lambda: alice.create(title="heard"))
            assert [task["title"] for task in event["page"]["changes"]] == ["heard"]
            assert seconds < 5, "the safety poll is a minute away: only the listener can be this quick"


@pytest.mark.parametrize(
    ("stop", "workers"), [(signal.SIGINT, "1"), (signal.SIGTERM, "2")], ids=["ctrl-c-one-worker", "sigterm-two-workers"]
)
def test_stopping_the_server_ends_every_open_stream_at_once_and_exits(live_database, make_user_id, workers, stop):
    with serving(live_database, WEB_CONCURRENCY=workers, RATE_LIMIT="off") as service:
        alice = Caller(service, make_user_id("alice"))
        streams = [alice.stream() for _ in range(4)]
        for stream in streams:
            stream.next_event()
        stopped = time.monotonic()
        service.process.send_signal(stop)
        for stream in streams:
            assert stream.ended.wait(5), "a stream outlived the server"
        ended = time.monotonic() - stopped
        assert service.process.wait(timeout=10) == 0
        exited = time.monotonic() - stopped
        assert all(stream.error is None for stream in streams), "each ended cleanly, with the last chunk"
        assert ended < 2.5, f"streams ended {ended:.2f} s after the signal"
        assert exited < 5, f"the server exited {exited:.2f} s after the signal"


def every_task(caller: Caller) -> dict[str, dict]:
    tasks, cursor = {}, None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = caller.http.get(f"/api/{caller.id}/tasks", params=params)
        tasks.update({task["id"]: task for task in page.json()["items"]})
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return tasks


class RandomWriter(threading.Thread):
    """Creates, renames, completes and deletes its own tasks at random until told to stop,
    against whichever service is current, riding out the restart."""

    def __init__(self, current: dict, user_id: str, token: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.current, self.user_id, self.token = current, user_id, token
        self.random, self.stop, self.mine, self.writes = random.Random(seed), threading.Event(), [], 0

    def call(self, method: str, path: str = "", **kwargs) -> httpx.Response | None:
        url = f"{self.current['url']}/api/{self.user_id}/tasks{path}"
        try:
            return httpx.request(method, url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10, **kwargs)
        except httpx.HTTPError:
            time.sleep(0.1)  # the service is restarting
            return None

    def run(self) -> None:
        while not self.stop.is_set():
            choice = self.random.random()
            if choice < 0.4 or not self.mine:
                response = self.call("POST", json={"title": f"task {self.random.random():.6f}"})
                if response is not None and response.status_code == 201:
                    self.mine.append(response.json()["id"])
            elif choice < 0.7:
                self.call("PATCH", f"/{self.random.choice(self.mine)}", json={"title": f"renamed {self.writes}"})
            elif choice < 0.8:
                self.call("PATCH", f"/{self.random.choice(self.mine)}/complete")
            else:
                task_id = self.mine.pop(self.random.randrange(len(self.mine)))
                self.call("DELETE", f"/{task_id}")
            self.writes += 1
            time.sleep(self.random.uniform(0, 0.05))


class ResumingReader(threading.Thread):
    """A frontend's copy of the tasks kept by the stream alone: it reconnects with a fresh token
    (some of them short-lived) and Last-Event-ID whenever the stream ends, whatever ended it."""

    def __init__(self, current: dict, user_id: str, tokens: TokenVerifier) -> None:
        super().__init__(daemon=True)
        self.current, self.user_id, self.tokens = current, user_id, tokens
        self.copy: dict[str, dict] = {}
        self.last_id: str | None = None
        self.connections, self.events, self.stop = 0, 0, threading.Event()
        self.failures: list[str] = []
        self.random = random.Random(7)

    def run(self) -> None:
        while not self.stop.is_set():
            token = self.tokens.mint(self.user_id, lifetime_seconds=self.random.choice([1, 2, 3600]))
            try:
                stream = OpenStream(self.current["url"], self.user_id, token, last_event_id=self.last_id)
            except AssertionError:
                continue
            if stream.status != 200:
                stream.close()
                time.sleep(0.2)
                continue
            self.connections += 1
            self.read(stream)
            stream.close()

    def read(self, stream: OpenStream) -> None:
        previous = None
        while not self.stop.is_set():
            try:
                event = stream.next_event(timeout=0.2)
            except queue.Empty:
                if stream.ended.is_set() and stream.arrived.empty():
                    return
                continue
            revision = revision_of(event)
            if previous is not None and revision <= previous:
                self.failures.append(f"id {revision} after {previous} on one connection")
            if self.last_id is not None and revision < decode_since(self.last_id):
                self.failures.append(f"resumed at {revision}, before {decode_since(self.last_id)}")
            previous, self.events = revision, self.events + 1
            for task in event["page"]["changes"]:
                self.copy[task["id"]] = task
            for task_id in event["page"]["deleted"]:
                self.copy.pop(task_id, None)
            self.last_id = event["id"]


def test_a_copy_kept_by_a_stream_cut_off_at_random_equals_the_final_state(make_user_id):
    """Writers change tasks at random while the reader's streams are cut off by the server (their
    jittered lifetime, their tokens' expiry, a restart of the API) and the database listener is
    dropped; in the end the reader's copy is exactly the tasks as they are."""
    secret = "a-secret-shared-by-both-instances-of-the-api"
    settings = {"BETTER_AUTH_SECRET": secret, "RATE_LIMIT": "off", "STREAM_LIFETIME_SECONDS": "3"}
    tokens = TokenVerifier(Settings.from_env(database_url="unused", jwt_secret=secret))
    user_id = make_user_id("alice")
    current: dict = {}
    database = contextlib.ExitStack()
    live_database = database.enter_context(throwaway_database())  # its own: one listener to drop
    instance = serving(live_database, **settings)
    service = instance.__enter__()
    current["url"] = service.base_url
    writers = [RandomWriter(current, user_id, tokens.mint(user_id), seed) for seed in range(3)]
    reader = ResumingReader(current, user_id, tokens)
    try:
        for thread in (*writers, reader):
            thread.start()
        time.sleep(3)
        drop = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tasks-api-listener'"
        dropped = sql(live_database, drop)
        assert len(dropped) == 1
        time.sleep(3)
        instance.__exit__(None, None, None)  # a restart: every stream is cut off, writes fail meanwhile
        instance = serving(live_database, **settings)
        service = instance.__enter__()
        current["url"] = service.base_url
        time.sleep(4)
        for writer in writers:
            writer.stop.set()
            writer.join(15)
        final = every_task(Caller(service, user_id))
        deadline = time.monotonic() + 15
        while reader.copy != final and time.monotonic() < deadline:
            time.sleep(0.2)
        reader.stop.set()
        reader.join(10)
        assert reader.failures == []
        assert reader.copy == final, "the copy kept by the stream is the tasks as they are"
        assert sum(writer.writes for writer in writers) > 50 and reader.connections >= 4, (
            f"{sum(writer.writes for writer in writers)} writes, {reader.connections} connections"
        )
    finally:
        reader.stop.set()
        for writer in writers:
            writer.stop.set()
        instance.__exit__(None, None, None)
        database.close()


def test_clients_that_leave_before_their_stream_starts_give_their_places_back(live_database, make_user_id):
    """Hang up right after asking, again and again: the per-user limit must not fill up."""
    with serving(live_database, STREAMS_PER_USER="2", RATE_LIMIT="off") as service:
        alice = Caller(service, make_user_id("alice"))
        host, port = service.base_url.removeprefix("http://").split(":")
        request = f"GET /api/{alice.id}/tasks/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice.token}\r\n\r\n"
        for _ in range(20):
            with socket.create_connection((host, int(port))) as hasty:
                hasty.sendall(request.encode())
        deadline = time.monotonic() + 10
        while (stream := alice.stream()).status != 200 and time.monotonic() < deadline:
            stream.close()
            time.sleep(0.2)
        assert stream.status == 200, "the places of the clients that left are free again"
        stream.close()
