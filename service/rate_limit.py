"""Rate limits (OWASP API4:2023) in fixed windows: calls per user once the token is verified
(`RATE_LIMIT`), and failed authentications per client address (`AUTH_FAILURE_RATE_LIMIT`), so
that guessing tokens is slow and cheap to refuse.

Counters live in this process or in Redis (`RATE_LIMIT_STORAGE_URL=redis://…`, through the
`limits` library), shared by every process that points at it. In this process a call costs one
dict lookup, whatever the number of callers: `limits`' own in-process store walks every key on
every hit (0.015 ms per call with no keys, 0.71 ms with 10,000, 3.7 ms with 50,000). Here a
window's counters are one dict, dropped whole when the window ends, and at most
`RATE_LIMIT_MAX_KEYS` callers are counted per window: past that a new user is let through
uncounted, a new address's failed authentication is refused. A counter store that fails never
takes the API down: the call is let through and a warning logged.

An address is counted as what `ipaddress` makes of it, an IPv6 one by its /64 (what one
subscriber gets); a client "address" that is not one (a proxy's garbage) shares a single key.
"""

import ipaddress
import logging
import math
import time

import limits
from limits.aio.storage import Storage
from limits.errors import StorageError

from service.errors import RateLimited
from service.request_context import add_response_headers
from service.settings import Settings

logger = logging.getLogger(__name__)

STORAGE_TIMEOUT_SECONDS = 0.5
IPV6_PREFIX = 64
NOT_AN_ADDRESS = "not-an-address"


def address_key(host: str | None) -> str:
    """The key a client address is counted under: the address, an IPv6 one's /64 network, or
    one shared key for anything that is not an address."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return NOT_AN_ADDRESS
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


FULL = -1
"""The count of a key that is not counted: the window has no room for another key."""


class FixedWindowCounters:
    """Counts per key in windows of `seconds` aligned to the clock. The current window is one
    dict; when the clock passes its end the dict is replaced, so no key is ever swept one by
    one, and it never holds more than `max_keys` keys."""

    def __init__(self, amount: int, seconds: int, max_keys: int, clock=time.time) -> None:
        self.amount, self.seconds, self.max_keys = amount, seconds, max_keys
        self._clock = clock
        self._window = -1
        self._counts: dict[str, int] = {}

    def _ends(self) -> float:
        """When the current window ends, after dropping the previous one if it is over."""
        window = int(self._clock() // self.seconds)
        if window != self._window:
            self._window, self._counts = window, {}
        return (window + 1) * self.seconds

    async def peek(self, key: str) -> tuple[int, float]:
        """The key's count (FULL if it is not counted and there is no room) and the window's end."""
        ends = self._ends()
        count = self._counts.get(key)
        if count is None:
            count = FULL if len(self._counts) >= self.max_keys else 0
        return count, ends

    async def hit(self, key: str) -> tuple[int, float]:
        """Counts one call: the key's count including it (or FULL), and the window's end."""
        count, ends = await self.peek(key)
        if count != FULL:
            count += 1
            self._counts[key] = count
        return count, ends


class SharedCounters:
    """The same in a `limits` store (Redis) that several processes share; it has no key cap."""

    def __init__(self, storage: Storage, rate: limits.RateLimitItem, name: str) -> None:
        self.storage, self.rate, self.name = storage, rate, name
        self.amount = rate.amount

    async def peek(self, key: str) -> tuple[int, float]:
        window_key = self.rate.key_for(self.name, key)
        return await self.storage.get(window_key), await self.storage.get_expiry(window_key)

    async def hit(self, key: str) -> tuple[int, float]:
        window_key = self.rate.key_for(self.name, key)
        count = await self.storage.incr(window_key, self.rate.get_expiry())
        return count, await self.storage.get_expiry(window_key)


def _counters(value: str, name: str, settings: Settings) -> FixedWindowCounters | SharedCounters | None:
    if value == "off":
        return None
    rate = limits.parse(value)
    url = settings.rate_limit_storage_url
    if url.startswith("memory://"):
        return FixedWindowCounters(rate.amount, rate.get_expiry(), settings.rate_limit_max_keys)
    if url.startswith(("redis://", "rediss://", "redis+unix://")):
        url = "async+" + url
    storage = limits.storage.storage_from_string(
        url, wrap_exceptions=True, stream_timeout=STORAGE_TIMEOUT_SECONDS, connect_timeout=STORAGE_TIMEOUT_SECONDS
    )
    return SharedCounters(storage, rate, name)


def _headers(amount: int, count: int, ends: float) -> dict[str, str]:
    """The RateLimit headers, with Retry-After once over the rate (or not counted)."""
    reset = max(0, math.ceil(ends - time.time()))
    headers = {
        "RateLimit-Limit": str(amount),
        "RateLimit-Remaining": str(max(0, amount - count)) if count != FULL else "0",
        "RateLimit-Reset": str(reset),
    }
    if count > amount or count == FULL:
        headers["Retry-After"] = str(max(1, reset))
    return headers


async def _counted(call) -> tuple[int, float] | None:
    """What a counter call returns; None if the store failed (the call is then let through)."""
    try:
        return await call
    except StorageError as error:
        logger.warning("rate limit store failed, call let through: %s", error)
        return None


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self._per_user = _counters(settings.rate_limit, "user", settings)
        self._per_address = _counters(settings.auth_failure_rate_limit, "auth-failure", settings)

    async def charge_user(self, user_id: str) -> None:
        """Counts a call by a signed-in user; RateLimited once they are over their rate. A user
        the full window cannot count is let through."""
        if self._per_user is None:
            return
        counted = await _counted(self._per_user.hit(user_id))
        if counted is None or counted[0] == FULL:
            return
        headers = _headers(self._per_user.amount, *counted)
        if "Retry-After" in headers:
            raise RateLimited(f"Too many requests; try again in {headers['Retry-After']} s.", headers=headers)
        add_response_headers(headers)

    async def refuse_failing_address(self, host: str | None) -> None:
        """Raises the 429 for an address already at its failed-authentication rate: called
        before a token is verified, so that such an address costs no signature check. An address
        that has not failed is never refused here, even when the window is full: a spray of
        failing addresses must not lock out a valid token from a new one."""
        if self._per_address is None:
            return
        counted = await _counted(self._per_address.peek(address_key(host)))
        if counted is not None and counted[0] >= self._per_address.amount:
            raise self._too_many_failures(self._per_address.amount + 1, counted[1])

    async def failed_authentication(self, host: str | None) -> RateLimited | None:
        """Counts a failed authentication from a client address; the 429 to answer instead of a
        401 once the address is over its rate, or when the full window cannot count it."""
        if self._per_address is None:
            return None
        counted = await _counted(self._per_address.hit(address_key(host)))
        if counted is None or 0 <= counted[0] <= self._per_address.amount:
            return None
        return self._too_many_failures(*counted)

    def _too_many_failures(self, count: int, ends: float) -> RateLimited:
        headers = _headers(self._per_address.amount, count, ends)
        return RateLimited(
            f"Too many failed authentications from this address; try again in {headers['Retry-After']} s.",
            headers=headers,
        )
