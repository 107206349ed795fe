"""The public keys of a JWKS endpoint (Better Auth's `/api/auth/jwks`), fetched without
blocking the event loop and kept as a production service needs them:

- keys are cached for `cache_seconds`; a stale cache is refreshed in the background while
  the keys it holds keep working;
- a `kid` the cache does not know triggers a fetch, at most one per `min_refresh_seconds`
  however many tokens name unknown keys, and one fetch at a time;
- an endpoint that is down, slow or answers garbage never loses the keys already held; a
  key that cannot be had because of it is `KeysUnavailable` (a 503), not a 401.
"""

import asyncio
import logging
import time

import httpx
import jwt

from service.errors import KeysUnavailable

logger = logging.getLogger(__name__)


class JwksKeys:
    def __init__(
        self, url: str, *, cache_seconds: float = 300, min_refresh_seconds: float = 30, timeout_seconds: float = 5
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout_seconds = timeout_seconds
        self.fetches = 0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")  # last successful fetch
        self._tried_at = float("-inf")  # last attempt, successful or not
        self._last_failed = False
        self._lock = asyncio.Lock()
        self._background: asyncio.Task | None = None

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id, or None if the endpoint (reached lately) does not publish it."""
        now = time.monotonic()
        if kid in self._keys:
            if now - self._fetched_at > self.cache_seconds and self._may_try(now):
                self._refresh_in_background()
            return self._keys[kid]
        if self._may_try(now):
            await self._refresh()
        if kid in self._keys:
            return self._keys[kid]
        if self._last_failed:
            raise KeysUnavailable("The keys that verify tokens cannot be fetched right now; try again shortly.")
        return None

    def _may_try(self, now: float) -> bool:
        return now - self._tried_at >= self.min_refresh_seconds

    def _refresh_in_background(self) -> None:
        if self._background is None or self._background.done():
            self._background = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        async with self._lock:
            if not self._may_try(time.monotonic()):
                return  # another request fetched while this one waited
            self._tried_at = time.monotonic()
            self.fetches += 1
            try:
                async with httpx.AsyncClient(timeout=self.timeout_seconds) as client:
                    response = await client.get(self.url, headers={"Accept": "application/json"})
                response.raise_for_status()
                key_set = jwt.PyJWKSet.from_dict(response.json())
            except (httpx.HTTPError, ValueError, TypeError, AttributeError, KeyError, jwt.PyJWTError) as error:
                self._last_failed = True
                logger.warning(
                    "JWKS fetch from %s failed (%s); keeping %d cached keys", self.url, error, len(self._keys)
                )
                return
            self._keys = {key.key_id: key for key in key_set.keys if key.key_id}
            self._fetched_at = self._tried_at
            self._last_failed = False
