"""The public keys of a JWKS endpoint (Better Auth's `/api/auth/jwks`), fetched without
blocking the event loop and kept as a production service needs them:

- keys are cached for `cache_seconds`; a stale cache is refreshed in the background while
  the keys it holds keep working;
- a `kid` the cache does not know triggers a fetch, at most one per `min_refresh_seconds`
  however many tokens name unknown keys, and one fetch at a time, which the requests that need
  it wait for (at most `timeout_seconds`) and nobody else does;
- an endpoint that is down, slow or answers garbage never loses the keys already held; a
  key that cannot be had because of it is `KeysUnavailable` (a 503), not a 401.

The endpoint is trusted with nothing (OWASP API10:2023): the whole fetch has one deadline
(`timeout_seconds`), at most `max_bytes` are read and, for gzip, decoded; a document with more
than `max_keys` keys is refused; only asymmetric signing keys that cost a bounded time to verify
with are kept (Ed25519, P-256/384/521, RSA of 2,048-8,192 bits with a small exponent); a key
of any other type or shape is skipped with a warning.
"""

import asyncio
import json
import logging
import time
import zlib

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from service.errors import KeysUnavailable

logger = logging.getLogger(__name__)

# What each key type may sign with, by curve for the curved ones; the first is the default
# when a key names no `alg`. `oct` (a shared secret anyone who reads the JWKS would know) and
# `none` are not here, so they are never used.
ALGORITHMS = {
    ("OKP", "Ed25519"): ("EdDSA",),
    ("EC", "P-256"): ("ES256",),
    ("EC", "P-384"): ("ES384",),
    ("EC", "P-521"): ("ES512",),
    ("RSA", None): ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
}
RSA_BITS = (2048, 8192)
RSA_MAX_EXPONENT = 2**32  # Better Auth, like everyone, uses 65537; a huge one makes verifying slow
MAX_KID_LENGTH = 256


class _Refused(Exception):
    """The endpoint's answer breaks a bound; the message says which."""


class JwksKeys:
    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300,
        min_refresh_seconds: float = 30,
        timeout_seconds: float = 5,
        max_bytes: int = 65536,
        max_keys: int = 50,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout_seconds = timeout_seconds
        self.max_bytes = max_bytes
        self.max_keys = max_keys
        self.fetches = 0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")  # last successful fetch
        self._tried_at = float("-inf")  # last attempt, successful or not
        self._last_failed = False
        self._fetching: asyncio.Task | None = None
        # Loading the CA bundle is the dearest part of an HTTPS client (20-250 ms measured here,
        # blocking the event loop): once, not on every fetch.
        self._tls = httpx.create_ssl_context()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id, or None if the endpoint (reached lately) does not publish it."""
        now = time.monotonic()
        if kid in self._keys:
            if now - self._fetched_at > self.cache_seconds and self._may_try(now):
                self._start_fetch()
            return self._keys[kid]
        if self._may_try(now):
            self._start_fetch()
        fetching = self._fetching
        if fetching is not None and not fetching.done():
            # Waits without cancelling it: other requests may be waiting for the same fetch. The
            # fetch has its own deadline; this one covers a loop too busy to notice it.
            await asyncio.wait({fetching}, timeout=self.timeout_seconds + 1)
        if kid in self._keys:
            return self._keys[kid]
        if self._last_failed or (fetching is not None and not fetching.done()):
            raise KeysUnavailable("The keys that verify tokens cannot be fetched right now; try again shortly.")
        return None

    def _may_try(self, now: float) -> bool:
        return now - self._tried_at >= self.min_refresh_seconds

    def _start_fetch(self) -> None:
        if self._fetching is None or self._fetching.done():
            self._tried_at = time.monotonic()
            self._fetching = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        self.fetches += 1
        try:
            async with asyncio.timeout(self.timeout_seconds):
                document = await self._download()
            keys = self._keys_of(document)
        except Exception as error:  # whatever the endpoint does, the keys held are kept
            self._last_failed = True
            if isinstance(error, TimeoutError):
                reason = f"no answer within {self.timeout_seconds:g} s"
            else:
                reason = str(error) if isinstance(error, _Refused) else f"{type(error).__name__}: {error}"
            logger.warning("JWKS fetch from %s failed (%s); keeping %d cached keys", self.url, reason, len(self._keys))
            return
        self._keys = keys
        self._fetched_at = self._tried_at
        self._last_failed = False

    async def _download(self) -> bytes:
        """The body, at most `max_bytes` of it as sent and as decoded, or `_Refused`."""
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip"}
        async with (
            httpx.AsyncClient(timeout=self.timeout_seconds, verify=self._tls) as client,
            client.stream("GET", self.url, headers=headers) as response,
        ):
            response.raise_for_status()
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise _Refused(f"the document is {declared} bytes, more than {self.max_bytes}")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity", "gzip"):
                raise _Refused(f"content encoding {encoding[:40]!r} is not gzip")
            decoder = zlib.decompressobj(wbits=31) if encoding == "gzip" else None
            received = 0
            body = bytearray()
            async for chunk in response.aiter_raw():  # as sent: httpx would decode it unbounded
                received += len(chunk)
                if received > self.max_bytes:
                    raise _Refused(f"the document is more than {self.max_bytes} bytes")
                # One byte more than the room left tells a document that is too large decoded.
                room = self.max_bytes - len(body) + 1
                try:
                    body += decoder.decompress(chunk, room) if decoder else chunk
                except zlib.error:
                    raise _Refused("the gzip stream is corrupt") from None
                if len(body) > self.max_bytes:
                    raise _Refused(f"the document is more than {self.max_bytes} bytes decoded")
        return bytes(body)

    def _keys_of(self, body: bytes) -> dict[str, jwt.PyJWK]:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise _Refused("the document is not JSON") from None
        listed = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(listed, list):
            raise _Refused('the document has no "keys" list')
        if len(listed) > self.max_keys:
            raise _Refused(f"the document has {len(listed)} keys, more than {self.max_keys}")
        keys: dict[str, jwt.PyJWK] = {}
        for index, data in enumerate(listed):
            try:
                kid, key = _usable_key(data)
            except _Refused as reason:
                logger.warning("JWKS key %d from %s skipped: %s", index, self.url, reason)
                continue
            keys.setdefault(kid, key)
        return keys


def _usable_key(data: object) -> tuple[str, jwt.PyJWK]:
    """The key's id and the key, if it is one this service verifies with; else `_Refused`."""
    if not isinstance(data, dict):
        raise _Refused("not an object")
    kid, kty, crv, alg = (data.get(name) for name in ("kid", "kty", "crv", "alg"))
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise _Refused(f"its kid is not a string of 1-{MAX_KID_LENGTH} characters")
    if data.get("use", "sig") != "sig":
        raise _Refused("it is not a signing key")
    typed = isinstance(kty, str) and isinstance(crv, str | None)
    allowed = ALGORITHMS.get((kty, None if kty == "RSA" else crv)) if typed else None
    if allowed is None:
        raise _Refused(f"key type {str(kty)[:20]!r} {str(crv)[:20]!r} is not one tokens are verified with")
    if alg is not None and alg not in allowed:
        raise _Refused(f"algorithm {str(alg)[:20]!r} does not go with a {kty} key")
    if kty == "RSA" and len(str(data.get("n", ""))) > RSA_BITS[1] // 6 + 2:  # base64url: 6 bits a character
        raise _Refused(f"an RSA key of more than {RSA_BITS[1]} bits")
    try:
        key = jwt.PyJWK(data, algorithm=alg or allowed[0])
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as error:
        raise _Refused(f"not a valid {kty} key ({type(error).__name__})") from None
    if isinstance(key.key, rsa.RSAPublicKey):
        numbers = key.key.public_numbers()
        if not RSA_BITS[0] <= key.key.key_size <= RSA_BITS[1] or numbers.e > RSA_MAX_EXPONENT:
            raise _Refused(f"an RSA key of {key.key.key_size} bits, exponent {numbers.e.bit_length()} bits")
    return kid, key
