"""A hostile auth server (OWASP API10:2023, unsafe consumption of APIs): whatever its JWKS
endpoint answers, the service spends a bounded time and memory on it, keeps the keys it holds,
answers a request whose key cannot be had with a 503 in bounded time, never a 500, and uses
only keys that are asymmetric and cheap to verify with. Against the production server (one
uvicorn worker), its costs read from /proc as in test_hostile_input."""

import base64
import json
import secrets
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.jwks_server import JwksServer, SigningKey
from tests.live_server import live_service
from tests.test_hostile_input import Answer, Server

DEADLINE_SECONDS = 1.0  # JWT_JWKS_TIMEOUT_SECONDS in this module
REFRESH_SECONDS = 0.2
MB = 1024 * 1024


@pytest.fixture(scope="module")
def trusted() -> SigningKey:
    return SigningKey()


@pytest.fixture(scope="module")
def jwks(trusted):
    server = JwksServer([trusted])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(jwks, trusted):
    settings = {
        "JWT_JWKS_URL": jwks.url,
        "JWT_JWKS_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
        "JWT_JWKS_MIN_REFRESH_SECONDS": str(REFRESH_SECONDS),
        "JWT_JWKS_CACHE_SECONDS": "3600",
        "RATE_LIMIT": "off",
        "AUTH_FAILURE_RATE_LIMIT": "off",
        "LOG_LEVEL": "ERROR",  # the warnings about the attacks are expected
    }
    with live_service(**settings) as service:
        api = Server(service)
        assert call(api, trusted.token()).status == 200  # the trusted key is held from here on
        yield api


@pytest.fixture(autouse=True)
def hostile(jwks):
    """The endpoint answers as the test says, from a moment when a fetch is allowed again."""
    time.sleep(REFRESH_SECONDS * 1.5)
    yield jwks
    jwks.answer = None


def call(server: Server, token: str, user: str = "alice") -> Answer:
    return server.request(server.head("GET", f"/api/{user}/tasks", f"Authorization: Bearer {token}"))


def timed_call(server: Server, token: str, user: str = "alice") -> tuple[Answer, float]:
    started = time.monotonic()
    answer = call(server, token, user)
    return answer, time.monotonic() - started


def assert_keys_unavailable(answer: Answer) -> None:
    assert answer.status == 503, answer.body[:300]
    assert answer.problem()["code"] == "AUTH_KEYS_UNAVAILABLE"


def assert_held_keys_still_work(server: Server, trusted: SigningKey) -> None:
    assert call(server, trusted.token({"jti": secrets.token_hex(8)})).status == 200
    assert call(server, server.token, user="mallory").status == 200  # HS256


def assert_refused_cheaply(server: Server, trusted: SigningKey) -> None:
    """A token whose key is unknown makes the service fetch the key set: the fetch is refused
    within the memory and CPU time of any attack, the token is a 503 within the deadline's
    bounds, and the keys held keep working."""
    with server.costs_at_most():
        answer, elapsed = timed_call(server, SigningKey().token())
    assert_keys_unavailable(answer)
    assert elapsed < 5 * DEADLINE_SECONDS
    assert_held_keys_still_work(server, trusted)


def answer_with(body_parts, **headers):
    """An endpoint that sends these headers and then the parts of its body as they come."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()  # no Content-Length: the body ends when the connection does
        for part in body_parts():
            handler.wfile.write(part)

    return answer


def key_set(*keys: dict) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


# --- size ---------------------------------------------------------------------------------------


def test_a_200_megabyte_key_set_is_read_no_further_than_64_kib(server, hostile, trusted):
    block = b" " * MB
    hostile.answer = answer_with(lambda: [b'{"keys": [', *[block] * 200, b"]}"])
    assert_refused_cheaply(server, trusted)


def gzip_bomb(megabytes: int) -> bytes:
    """One gzip member that decodes to `megabytes` MB of spaces: a compressed megabyte, flushed so
    that it stands alone, repeated (1 GB is about 1 MB)."""
    block = b" " * MB
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    flushed = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(block, crc)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + flushed * megabytes + end + struct.pack("<II", crc, (megabytes * MB) & 0xFFFFFFFF)


@pytest.mark.parametrize("megabytes", [1024, 40], ids=["1 GB from 1 MB", "40 MB from 40 KB"])
def test_a_gzip_bomb_is_decoded_no_further_than_64_kib(server, hostile, trusted, megabytes):
    bomb = gzip_bomb(megabytes)
    hostile.answer = answer_with(lambda: [bomb], Content_Encoding="gzip")
    assert_refused_cheaply(server, trusted)


def test_a_hundred_thousand_keys_are_refused_unparsed(server, hostile, trusted):
    template = SigningKey().public_jwk
    document = key_set(*({**template, "kid": f"k{i}"} for i in range(100_000)))
    hostile.answer = answer_with(lambda: [document])
    assert_refused_cheaply(server, trusted)


def test_more_than_fifty_keys_are_refused_even_in_a_small_document(server, hostile, trusted):
    many = [SigningKey() for _ in range(60)]
    hostile.answer = answer_with(lambda: [key_set(*(key.public_jwk for key in many))])
    assert_keys_unavailable(call(server, many[-1].token()))
    assert_held_keys_still_work(server, trusted)


# --- time ---------------------------------------------------------------------------------------


def test_a_key_set_dripped_a_byte_at_a_time_is_abandoned_at_the_deadline_and_nobody_else_waits(
    server, hostile, trusted
):
    def drip():
        yield b'{"keys": ['
        for _ in range(300):  # 30 s, unless the service hangs up first
            time.sleep(0.1)
            yield b" "

    hostile.answer = answer_with(drip)
    answers: dict[str, tuple[Answer, float] | Exception] = {}

    def unknown_kid(name: str) -> None:
        try:
            answers[name] = timed_call(server, SigningKey().token())
        except Exception as error:  # an answer that never came
            answers[name] = error

    first = threading.Thread(target=unknown_kid, args=("first",))
    first.start()
    time.sleep(0.2)  # the fetch it started is dripping
    hs256, hs256_seconds = timed_call(server, server.token, user="mallory")
    cached, cached_seconds = timed_call(server, trusted.token({"jti": "while dripping"}))
    later = [threading.Thread(target=unknown_kid, args=(f"later {n}",)) for n in range(20)]
    for thread in [*later]:
        thread.start()
    for thread in [first, *later]:
        thread.join()

    assert (hs256.status, cached.status) == (200, 200)
    assert hs256_seconds < 1 and cached_seconds < 1, "requests that need no fetch never wait for one"
    for name, result in answers.items():
        assert not isinstance(result, Exception), f"{name}: {result}"
        answer, elapsed = result
        assert_keys_unavailable(answer)
        assert elapsed < 5 * DEADLINE_SECONDS, f"{name} waited {elapsed:.1f} s"
    assert_held_keys_still_work(server, trusted)


# --- what a key may be --------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_symmetric_key_in_the_key_set_signs_nothing(server, hostile, trusted):
    """A JWKS is public: an `oct` key in it is a secret everyone knows."""
    secret = secrets.token_bytes(48)
    published = {"kty": "oct", "k": b64(secret), "kid": "shared", "alg": "HS384"}
    hostile.answer = answer_with(lambda: [key_set(trusted.public_jwk, published)])
    now = int(time.time())
    forged = jwt.encode({"sub": "victim", "exp": now + 600}, secret, "HS384", {"kid": "shared"})
    answer = call(server, forged, user="victim")
    assert answer.status == 401, answer.body[:300]
    assert_held_keys_still_work(server, trusted)


def rsa_key_with(private: rsa.RSAPrivateKey, *, exponent: int) -> rsa.RSAPrivateKey:
    """The same primes with another public exponent: an RSA key as slow to verify with as to sign."""
    numbers = private.private_numbers()
    p, q = numbers.p, numbers.q
    d = pow(exponent, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(exponent, p * q)
    return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), rsa.rsa_crt_iqmp(p, q), public).private_key()


def huge_exponent_key() -> SigningKey:
    key = SigningKey("RS256")
    exponent = secrets.randbits(2040) | (1 << 2039) | 1
    while True:
        try:
            key.private = rsa_key_with(key.private, exponent=exponent)
            return key
        except ValueError:  # not invertible: try the next odd number
            exponent += 2


def small_key() -> SigningKey:
    key = SigningKey("RS256")
    key.private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the point of the test
@pytest.mark.parametrize("make", [small_key, huge_exponent_key], ids=["1024-bit modulus", "2040-bit public exponent"])
def test_rsa_keys_too_weak_or_too_slow_to_verify_with_are_never_used(server, hostile, trusted, make):
    key = make()
    hostile.answer = answer_with(lambda: [key_set(trusted.public_jwk, key.public_jwk)])
    answer = call(server, key.token())
    assert answer.status == 401, answer.body[:300]
    assert "key this service does not know" in answer.problem()["detail"]
    assert_held_keys_still_work(server, trusted)


def test_an_rsa_key_over_8192_bits_is_never_used(server, hostile, trusted):
    """1.3 ms of CPU per forged token against a 16,384-bit key, before any rate limit."""
    modulus = secrets.randbits(16384) | (1 << 16383) | 1
    huge = {"kty": "RSA", "kid": "huge", "alg": "RS256", "e": "AQAB", "n": b64(modulus.to_bytes(2048, "big"))}
    hostile.answer = answer_with(lambda: [key_set(trusted.public_jwk, huge)])
    header = b64(json.dumps({"alg": "RS256", "kid": "huge", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": "alice", "exp": int(time.time()) + 600}).encode())
    forged = f"{header}.{claims}.{b64(secrets.token_bytes(2048))}"
    answer = call(server, forged)
    assert answer.status == 401
    assert "key this service does not know" in answer.problem()["detail"]
    assert_held_keys_still_work(server, trusted)


# --- shape --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        b"[" * 50_000 + b"]" * 50_000,
        b'{"keys": {"not": "a list"}}',
        b'{"keys": [' + b"[" * 5_000 + b"]" * 5_000 + b"]}",
    ],
    ids=["nested 50,000 deep", "keys not a list", "a key nested 5,000 deep"],
)
def test_a_malformed_key_set_is_refused_whole_and_never_a_500(server, hostile, trusted, document):
    hostile.answer = answer_with(lambda: [document])
    assert_keys_unavailable(call(server, SigningKey().token()))
    assert_held_keys_still_work(server, trusted)


@pytest.mark.parametrize(
    "broken",
    [
        {"kid": ["a", "list"]},
        {"alg": "none"},
        {"kty": ["OKP"]},
        {"crv": {"not": "a curve"}},
        {"x": 42},
        {"alg": "ES256"},
        {"crv": "Ed448"},
        {"use": "enc"},
    ],
    ids=str,
)
def test_a_malformed_key_is_skipped_and_the_others_work(server, hostile, trusted, broken):
    newcomer = SigningKey()
    spoiled = {**SigningKey().public_jwk, **broken}
    hostile.answer = answer_with(lambda: [key_set(trusted.public_jwk, spoiled, newcomer.public_jwk)])
    answer = call(server, newcomer.token())
    assert answer.status == 200, answer.body[:300]
    assert_held_keys_still_work(server, trusted)
