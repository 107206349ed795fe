"""Nothing one caller does makes the service dearer for everyone else: attacks that grow what
the service holds (counters, rows, connections) or leave work running after their request,
each run against the production server (one uvicorn worker, rate limits on) while a normal
user's requests are measured: the server CPU they cost, and how long they wait."""

import re
import time

import pytest

from tests.live_server import live_service
from tests.test_hostile_input import USER, Server, read_answer

ATTACK_ADDRESSES = 10_000


class Attacked(Server):
    """The service under attack, with what one normal request costs it."""

    def pipeline(self, heads: list[str], batch: int = 200) -> list[int]:
        """Sends the requests over one keep-alive connection, `batch` at a time; their statuses."""
        statuses, buffer = [], b""
        with self.connect() as connection:
            for start in range(0, len(heads), batch):
                chunk = heads[start : start + batch]
                connection.sendall("".join(chunk).encode("latin-1"))
                for _ in chunk:
                    while b"\r\n\r\n" not in buffer:
                        buffer += connection.recv(65536)
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                    while len(buffer) < length:
                        buffer += connection.recv(65536)
                    buffer = buffer[length:]
                    statuses.append(int(head.split()[1]))
        return statuses

    def normal_call(self) -> str:
        return self.head("GET", f"/api/{USER}/tasks?limit=5", f"Authorization: Bearer {self.token}")

    def normal_user_cost(self, calls: int = 300) -> tuple[float, float]:
        """Server CPU milliseconds per normal request, and the median wait in milliseconds."""
        waits = []
        cpu = self.cpu_seconds()
        with self.connect() as connection:
            for _ in range(calls):
                started = time.perf_counter()
                connection.sendall(self.normal_call().encode())
                assert read_answer(connection).status == 200
                waits.append(time.perf_counter() - started)
        spent = self.cpu_seconds() - cpu
        return 1000 * spent / calls, 1000 * sorted(waits)[calls // 2]

    def failed_authentication(self, forwarded_for: str) -> str:
        return self.head("GET", f"/api/{USER}/tasks", f"X-Forwarded-For: {forwarded_for}")


@pytest.fixture(scope="module")
def server():
    # Failures counted per day: no window ends in the middle of a test.
    with live_service(
        validate_responses=False, RATE_LIMIT="100000/minute", AUTH_FAILURE_RATE_LIMIT="30/day"
    ) as service:
        yield Attacked(service)


# --- the rate limiter's counters ----------------------------------------------------------------


def test_ten_thousand_addresses_failing_to_authenticate_cost_a_normal_user_nothing(server):
    """Finding 1: `limits`' in-process store swept every key on every hit, so each address an
    attacker used made every later call dearer (0.49 -> 4.17 ms of CPU after 50,000)."""
    cpu_before, wait_before = server.normal_user_cost()
    heads = [server.failed_authentication(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}") for i in range(ATTACK_ADDRESSES)]
    assert set(server.pipeline(heads)) == {401}
    cpu_after, wait_after = server.normal_user_cost()
    print(f"normal user: {cpu_before:.2f} -> {cpu_after:.2f} ms CPU, p50 {wait_before:.2f} -> {wait_after:.2f} ms")
    assert cpu_after < 1.5 * cpu_before + 0.2, f"{cpu_before:.2f} -> {cpu_after:.2f} ms of CPU per request"


def test_long_forwarded_addresses_do_not_grow_the_server(server):
    """Finding 1: 30 KB `X-Forwarded-For` values from a trusted proxy were each a key, kept:
    20,000 of them grew the process 136 -> 711 MB."""
    resting = server.memory_megabytes("VmRSS")
    heads = [server.failed_authentication(f"{i:05d}" + "x" * 30_000) for i in range(2_000)]
    statuses = server.pipeline(heads, batch=20)
    grew = server.memory_megabytes("VmRSS") - resting
    print(f"server RSS {resting:.0f} -> {resting + grew:.0f} MB")
    assert grew < 20, f"the server grew by {grew:.0f} MB"
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) <= 30  # what is not an address is one key, not one each


def test_spellings_of_one_ipv6_network_share_one_allowance(server):
    """Finding 1: 2,500 spellings of one IPv6 address each got their own failed-auth allowance."""
    spellings = [f"2001:db8:0:7::{i:x}" for i in range(1, 21)]
    spellings += [f"2001:0db8:0000:0007:0000:0000:0001:{i:04x}" for i in range(20)]
    spellings += [f"[2001:db8:0:7:ffff::{i:x}]:4{i:04d}" for i in range(1, 11)]
    statuses = server.pipeline([server.failed_authentication(spelling) for spelling in spellings])
    assert statuses.count(401) == 30 and statuses.count(429) == 20, statuses


def test_the_client_is_the_rightmost_address_the_proxy_did_not_add(server):
    """Trusted proxies (FORWARDED_ALLOW_IPS, 127.0.0.1 here) append the address they saw; what
    the client wrote to the left of it is not believed."""
    heads = [server.failed_authentication(f"198.51.100.{i}, 203.0.113.9") for i in range(40)]
    assert server.pipeline(heads).count(429) == 10
    heads = [server.failed_authentication(f"198.51.100.{i}, 203.0.113.10, 127.0.0.1") for i in range(40)]
    assert server.pipeline(heads).count(429) == 10  # the trusted hop is skipped, the next one counted
