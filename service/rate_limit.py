"""Rate limits (OWASP API4:2023), counted by the `limits` library in fixed windows: calls per
user once the token is verified (`RATE_LIMIT`), and failed authentications per client address
(`AUTH_FAILURE_RATE_LIMIT`), so that guessing tokens is slow and cheap to refuse.

Counters live in this process (`memory://`) or in Redis (`RATE_LIMIT_STORAGE_URL=redis://…`),
shared by every process that points at it. A counter store that fails never takes the API
down: the call is let through and a warning logged.
"""

import logging
import math
import time

import limits
from limits.aio.storage import MemoryStorage, Storage
from limits.errors import StorageError

from service.errors import RateLimited
from service.request_context import add_response_headers
from service.settings import Settings

logger = logging.getLogger(__name__)

STORAGE_TIMEOUT_SECONDS = 0.5


def storage_for(url: str) -> Storage:
    if url.startswith("memory://"):
        return MemoryStorage()
    if url.startswith(("redis://", "rediss://", "redis+unix://")):
        url = "async+" + url
    return limits.storage.storage_from_string(
        url, wrap_exceptions=True, stream_timeout=STORAGE_TIMEOUT_SECONDS, connect_timeout=STORAGE_TIMEOUT_SECONDS
    )


def _rate(value: str) -> limits.RateLimitItem | None:
    return None if value == "off" else limits.parse(value)


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self._per_user = _rate(settings.rate_limit)
        self._per_address = _rate(settings.auth_failure_rate_limit)
        self._storage = storage_for(settings.rate_limit_storage_url)

    async def _hit(self, rate: limits.RateLimitItem, *key: str) -> dict[str, str] | None:
        """Counts one call; the RateLimit headers, with Retry-After once over the rate. None if
        the counter store failed. What `limits`' FixedWindowRateLimiter.hit does, keeping the
        count it gets back instead of asking the store for it again (two calls, not three)."""
        window_key = rate.key_for(*key)
        try:
            count = await self._storage.incr(window_key, rate.get_expiry())
            reset_at = await self._storage.get_expiry(window_key)
        except StorageError as error:
            logger.warning("rate limit store failed, call let through: %s", error)
            return None
        allowed = count <= rate.amount
        reset = max(0, math.ceil(reset_at - time.time()))
        headers = {
            "RateLimit-Limit": str(rate.amount),
            "RateLimit-Remaining": str(max(0, rate.amount - count)),
            "RateLimit-Reset": str(reset),
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, reset))
        return headers

    async def charge_user(self, user_id: str) -> None:
        """Counts a call by a signed-in user; RateLimited once they are over their rate."""
        if self._per_user is None:
            return
        headers = await self._hit(self._per_user, "user", user_id)
        if headers is None:
            return
        if "Retry-After" in headers:
            raise RateLimited(f"Too many requests; try again in {headers['Retry-After']} s.", headers=headers)
        add_response_headers(headers)

    async def failed_authentication(self, address: str) -> RateLimited | None:
        """Counts a failed authentication from an address; the 429 to answer instead of a 401
        once the address is over its rate."""
        if self._per_address is None:
            return None
        headers = await self._hit(self._per_address, "auth-failure", address)
        if headers is None or "Retry-After" not in headers:
            return None
        return RateLimited(
            f"Too many failed authentications from this address; try again in {headers['Retry-After']} s.",
            headers=headers,
        )
