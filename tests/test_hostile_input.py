"""Attacks anyone could try with curl and a few scripts, against the production server (one
uvicorn worker): each answer is a problem+json 4xx, and each attack may cost the service at
most the CPU time and the peak memory its row allows, measured on the server process."""

import base64
import contextlib
import json
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.auth import TokenVerifier
from service.settings import Settings
from tests.live_server import live_service

USER = "mallory"
CPU_SECONDS = 0.5
PEAK_MEGABYTES = 20
TIMEOUT_SECONDS = 1.0  # the service's header and body timeouts in this module
KEEP_ALIVE_SECONDS = 1.0
MB = 1024 * 1024


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict:
        assert self.headers["content-type"] == "application/problem+json", self
        assert self.headers["x-content-type-options"] == "nosniff"
        assert self.headers["cache-control"] == "no-store"
        assert re.fullmatch(r"[0-9a-f]{32}", self.headers["x-request-id"])
        problem = json.loads(self.body)
        assert problem["status"] == self.status
        assert problem["request_id"] == self.headers["x-request-id"]
        return problem


class Server:
    """The service under attack, spoken to over raw sockets, with its costs read from /proc."""

    def __init__(self, service) -> None:
        self.host, port = urllib.parse.urlsplit(service.base_url).netloc.split(":")
        self.port = int(port)
        self.pid = service.pid
        secret = service.env["BETTER_AUTH_SECRET"]
        self.token = TokenVerifier(Settings.from_env({}, database_url="unused", jwt_secret=secret)).mint(USER)

    def connect(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=10)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100  # utime + stime in clock ticks

    def reset_peak_memory(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def memory_megabytes(self, field: str) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1)) / 1024

    @contextlib.contextmanager
    def costs_at_most(self, cpu_seconds: float = CPU_SECONDS, peak_megabytes: float = PEAK_MEGABYTES):
        resting = self.memory_megabytes("VmRSS")
        self.reset_peak_memory()
        cpu = self.cpu_seconds()
        yield
        spent = self.cpu_seconds() - cpu
        grew = self.memory_megabytes("VmHWM") - resting
        assert spent <= cpu_seconds, f"the attack cost {spent:.2f} s of server CPU"
        assert grew <= peak_megabytes, f"the attack grew the server's peak memory by {grew:.1f} MB"

    def request(self, head: str, body: bytes = b"", *, chunks: int = 1) -> Answer:
        """Sends a request (the head, then the body in `chunks` writes) and reads the answer; stops
        sending as soon as the server answers, as a client that reads while it writes would."""
        with self.connect() as connection:
            connection.sendall(head.encode("latin-1"))
            size = max(1, len(body) // chunks)
            for start in range(0, len(body), size):
                if _readable(connection):
                    break
                with contextlib.suppress(ConnectionError):
                    connection.sendall(body[start : start + size])
            return read_answer(connection)

    def head(self, method: str, path: str, *headers: str) -> str:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", *headers]
        return "\r\n".join(lines) + "\r\n\r\n"

    def post_json(self, body: bytes, *, content_type: str = "application/json") -> Answer:
        head = self.head(
            "POST",
            f"/api/{USER}/tasks",
            f"Authorization: Bearer {self.token}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        )
        return self.request(head, body)


def _readable(connection: socket.socket) -> bool:
    import select

    return bool(select.select([connection], [], [], 0)[0])


def read_answer(connection: socket.socket) -> Answer:
    data = b""
    with contextlib.suppress(ConnectionError, TimeoutError):
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
        return Answer(status, headers, body)
    raise AssertionError(f"no answer; received {data[:200]!r}")


@pytest.fixture(scope="module")
def server():
    settings = {
        "HEADER_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "BODY_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "KEEP_ALIVE_SECONDS": str(KEEP_ALIVE_SECONDS),
        "RATE_LIMIT": "off",
        "AUTH_FAILURE_RATE_LIMIT": "off",
    }
    with live_service(**settings) as service:
        yield Server(service)


# --- the query string ---------------------------------------------------------------------------


def test_twelve_thousand_query_parameters_without_a_token_are_414_at_once(server):
    with server.costs_at_most():
        answer = server.request(server.head("GET", "/health?" + "&" * 12_000))
    assert answer.status == 414
    assert answer.problem()["code"] == "URI_TOO_LONG"


def test_a_thousand_query_parameters_in_a_short_url_are_400(server):
    with server.costs_at_most():
        answer = server.request(server.head("GET", "/health?" + "&".join(["a"] * 1000)))
    assert answer.status == 400
    assert answer.problem()["code"] == "TOO_MANY_PARAMETERS"


def test_a_long_path_is_414(server):
    with server.costs_at_most():
        answer = server.request(server.head("GET", f"/api/{'u' * 20_000}/tasks"))
    assert answer.status == 414


def test_a_four_thousand_digit_limit_is_a_short_400(server):
    head = server.head("GET", f"/api/{USER}/tasks?limit={'9' * 4000}", f"Authorization: Bearer {server.token}")
    with server.costs_at_most():
        answer = server.request(head)
    assert answer.status == 400
    assert len(answer.body) < 1000, "the value is quoted by a short prefix only"


def test_a_cursor_of_deeply_nested_json_is_400_not_a_crash(server):
    cursor = base64.urlsafe_b64encode(b"[" * 1500 + b"]" * 1500).decode().rstrip("=")
    head = server.head("GET", f"/api/{USER}/tasks?cursor={cursor}", f"Authorization: Bearer {server.token}")
    with server.costs_at_most():
        answer = server.request(head)
    assert answer.status == 400
    assert answer.problem()["code"] == "INVALID_CURSOR"


# --- headers --------------------------------------------------------------------------------


def test_a_hundred_megabyte_header_is_431_after_the_first_kilobytes(server):
    head = server.head("GET", "/health").removesuffix("\r\n")
    with server.costs_at_most():
        answer = server.request(head, b"X-Big: " + b"a" * (100 * MB), chunks=100 * 64)
    assert answer.status == 431
    assert answer.problem()["code"] == "HEADERS_TOO_LARGE"


def test_ten_thousand_small_headers_are_431(server):
    headers = [f"X-H{i}: v" for i in range(10_000)]
    with server.costs_at_most():
        answer = server.request(server.head("GET", "/health", *headers))
    assert answer.status == 431


def test_a_forty_kilobyte_bearer_token_is_431_before_anyone_verifies_it(server):
    head = server.head("GET", f"/api/{USER}/tasks", f"Authorization: Bearer {'e' * 40_000}")
    with server.costs_at_most():
        answer = server.request(head)
    assert answer.status == 431


def test_what_is_not_http_gets_a_400_problem(server):
    with server.costs_at_most():
        answer = server.request("\x16\x03\x01 this is not HTTP\r\n\r\n")
    assert answer.status == 400
    assert answer.problem()["code"] == "MALFORMED_REQUEST"


# --- bodies ---------------------------------------------------------------------------------


def test_a_declared_hundred_megabyte_body_is_413_unread(server):
    head = server.head(
        "POST", f"/api/{USER}/tasks", f"Authorization: Bearer {server.token}",
        "Content-Type: application/json", f"Content-Length: {100 * MB}",
    )  # fmt: skip
    with server.costs_at_most():
        answer = server.request(head, b"a" * (100 * MB), chunks=100 * 16)
    assert answer.status == 413
    assert answer.problem()["code"] == "BODY_TOO_LARGE"
    assert answer.headers["connection"] == "close"


def test_a_chunked_hundred_megabyte_body_is_413_after_the_limit(server):
    head = server.head(
        "POST", f"/api/{USER}/tasks", f"Authorization: Bearer {server.token}",
        "Content-Type: application/json", "Transfer-Encoding: chunked",
    )  # fmt: skip
    chunk = b"%x\r\n%s\r\n" % (MB, b"a" * MB)
    with server.costs_at_most():
        answer = server.request(head, chunk * 100, chunks=100 * 16)
    assert answer.status == 413


def test_a_chunked_body_within_the_limit_creates_the_task(server):
    body = json.dumps({"title": "sent in chunks"}).encode()
    head = server.head(
        "POST", f"/api/{USER}/tasks", f"Authorization: Bearer {server.token}",
        "Content-Type: application/json", "Transfer-Encoding: chunked",
    )  # fmt: skip
    answer = server.request(head, b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    assert answer.status == 201, answer.body
    assert json.loads(answer.body)["title"] == "sent in chunks"


def test_four_thousand_unsortable_tags_are_a_quick_400(server):
    body = json.dumps({"title": "x", "tags": [{"k": i} for i in range(4000)]}).encode()
    assert len(body) < 64 * 1024
    with server.costs_at_most():
        answer = server.post_json(body)
    assert answer.status == 400
    assert answer.problem()["code"] == "VALIDATION_FAILED"
    assert len(answer.body) < 10_000


def test_six_thousand_equal_tags_are_a_quick_400(server):
    body = json.dumps({"title": "x", "tags": [["same"]] * 6_000}).encode()
    with server.costs_at_most():
        answer = server.post_json(body)
    assert answer.status == 400


def test_an_oversized_title_is_quoted_by_a_short_prefix(server):
    body = json.dumps({"title": "t" * 60_000}).encode()
    with server.costs_at_most():
        answer = server.post_json(body)
    assert answer.status == 400
    (violation,) = answer.problem()["errors"]
    assert violation["pointer"] == "/title"
    assert len(violation["message"]) < 200


def test_three_thousand_unknown_fields_list_the_first_fifty(server):
    body = json.dumps({"title": "x", **{f"field{i}": 0 for i in range(3000)}}).encode()
    with server.costs_at_most():
        answer = server.post_json(body)
    problem = answer.problem()
    assert len(problem["errors"]) == 50
    assert "more than 50 violations" in problem["detail"]


def test_thirty_thousand_nested_arrays_are_400(server):
    with server.costs_at_most():
        answer = server.post_json(b"[" * 30_000 + b"]" * 30_000)
    assert answer.status == 400
    assert answer.problem()["code"] == "MALFORMED_BODY"


def test_media_types_are_case_insensitive(server):
    answer = server.post_json(json.dumps({"title": "shouted"}).encode(), content_type="APPLICATION/JSON")
    assert answer.status == 201, answer.body
    assert json.loads(answer.body)["title"] == "shouted"


# --- routes outside the operations ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/docs/nothing-here", 404),
        ("GET", "/api/docs/assets/nothing-here.js", 404),
        ("POST", "/api/docs", 405),
        ("DELETE", "/api/openapi.yaml", 405),
        ("GET", "/api/openapi.json/more", 404),
    ],
)
def test_misses_under_the_docs_routes_are_problems(server, method, path, status):
    answer = server.request(server.head(method, path, "Content-Length: 0"))
    assert answer.status == status
    answer.problem()


# --- time -----------------------------------------------------------------------------------


def _closed_within(connection: socket.socket, seconds: float) -> tuple[float, bytes]:
    started = time.monotonic()
    connection.settimeout(seconds)
    received = b""
    with contextlib.suppress(ConnectionError):
        while chunk := connection.recv(65536):
            received += chunk
    return time.monotonic() - started, received


def test_a_head_sent_a_byte_at_a_time_is_cut_off_with_408(server):
    with server.connect() as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        stop = threading.Event()

        def dribble():
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    connection.sendall(b"X")
                stop.wait(0.2)

        threading.Thread(target=dribble, daemon=True).start()
        _, received = _closed_within(connection, 5 * TIMEOUT_SECONDS)
        stop.set()
    assert time.monotonic() - started < 3 * TIMEOUT_SECONDS
    assert received.startswith(b"HTTP/1.1 408"), received[:100]


def test_the_next_request_on_a_connection_gets_its_own_time_for_its_head(server):
    """The connection's one deadline moves with each request: a second request begun just
    before the first one's deadline would have passed still has the whole time for its head."""
    with server.connect() as connection:
        connection.sendall(server.head("GET", "/health").encode())
        assert read_answer(connection).status == 200
        time.sleep(0.6 * TIMEOUT_SECONDS)  # within the keep-alive time
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        elapsed, received = _closed_within(connection, 5 * TIMEOUT_SECONDS)
    assert 0.8 * TIMEOUT_SECONDS < elapsed < 3 * TIMEOUT_SECONDS
    assert received.startswith(b"HTTP/1.1 408"), received[:100]


def test_a_body_that_never_arrives_is_cut_off_with_408(server):
    head = server.head(
        "POST", f"/api/{USER}/tasks", f"Authorization: Bearer {server.token}",
        "Content-Type: application/json", "Content-Length: 100",
    )  # fmt: skip
    with server.connect() as connection:
        connection.sendall(head.encode() + b'{"title": ')
        elapsed, received = _closed_within(connection, 5 * TIMEOUT_SECONDS)
    assert elapsed < 3 * TIMEOUT_SECONDS
    assert received.startswith(b"HTTP/1.1 408"), received[:100]


def test_a_connection_that_says_nothing_is_closed(server):
    with server.connect() as connection:
        elapsed, _ = _closed_within(connection, 5 * TIMEOUT_SECONDS)
    assert elapsed < 3 * TIMEOUT_SECONDS


def test_an_idle_keep_alive_connection_is_closed(server):
    with server.connect() as connection:
        connection.sendall(server.head("GET", "/health").encode())
        answer = read_answer(connection)
        assert answer.status == 200
        elapsed, _ = _closed_within(connection, 5 * KEEP_ALIVE_SECONDS)
    assert elapsed < 3 * KEEP_ALIVE_SECONDS


def test_health_answers_promptly_while_eight_attacks_run(server):
    """The original finding: eight parallel expensive requests kept /health waiting 12.8 s."""
    attack = server.head("GET", "/health?" + "&".join(["a"] * 1000))
    body = json.dumps({"title": "x", "tags": [{"k": i} for i in range(4000)]}).encode()
    threads = [threading.Thread(target=server.request, args=(attack,)) for _ in range(4)]
    threads += [threading.Thread(target=server.post_json, args=(body,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    answer = server.request(server.head("GET", "/health"))
    waited = time.monotonic() - started
    for thread in threads:
        thread.join()
    assert answer.status == 200
    assert waited < 1.0, f"/health waited {waited:.2f} s"


def test_every_answer_carries_the_standard_headers(server):
    answer = server.request(server.head("GET", f"/api/{USER}/tasks", f"Authorization: Bearer {server.token}"))
    assert answer.status == 200
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-request-id"]
