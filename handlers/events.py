"""streamChanges: the change feed as Server-Sent Events, read exactly as `listChanges` reads it.

Each event is one page of the feed, its id the page's `next_since`; the stream waits for a
wake-up (service/fanout.py) between pages and holds no database connection while it waits.
Everything that can refuse the stream (a bad or expired token, the limits) answers before it
starts, as a problem.
"""

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator

import jwt
from starlette.responses import StreamingResponse

from db.changes import ChangeFeed, Changes, decode_since
from service import event_stream
from service.contract import request
from service.fanout import Subscription

logger = logging.getLogger(__name__)

RETRY_MS = 1000
"""How long a browser's EventSource waits before it reconnects after a stream ends."""
SHORTEST_LIFETIME = 2 / 3
"""A stream lives between this share of STREAM_LIFETIME_SECONDS and all of it, at random, so
that streams opened together (after a deploy, say) do not all reconnect together."""


async def stream_changes(user_id: str, limit: int, since: str | None = None):
    state = request.state
    token = request.headers.get("Last-Event-ID") or since
    position = decode_since(token) if token else None
    token_left = _token_expiry(request.headers["Authorization"]) - time.time()
    subscription = state.fanout.open(user_id)
    try:
        first = await state.changes.after(user_id, position, limit)
    except BaseException:
        subscription.close()
        raise
    lifetime = state.stream_lifetime_seconds * random.uniform(SHORTEST_LIFETIME, 1.0)
    stream = Stream(state.changes, subscription, user_id, limit, state.stream_keepalive_seconds)
    return StreamingResponse(
        stream.events(first, seconds=min(lifetime, token_left)),
        media_type=event_stream.MEDIA_TYPE,
        headers={"X-Accel-Buffering": "no"},
    )


def _token_expiry(authorization: str) -> float:
    """The `exp` of the bearer token, which the security check has verified (split as Connexion
    splits the header: a tab or two spaces after `Bearer` are allowed). Read before the stream
    takes its place, so that nothing here can keep a place that is never given back."""
    claims = jwt.decode(authorization.split(maxsplit=1)[1], options={"verify_signature": False})
    return float(claims["exp"])


class Stream:
    def __init__(
        self, feed: ChangeFeed, subscription: Subscription, user_id: str, limit: int, keepalive: float
    ) -> None:
        self.feed, self.subscription, self.user_id = feed, subscription, user_id
        self.limit, self.keepalive = limit, keepalive

    async def events(self, first: Changes, *, seconds: float) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + seconds
        try:
            page, retry = first, RETRY_MS
            while True:
                if page is not None:
                    yield _changes_event(page, retry)
                    retry, sent_at = None, loop.time()
                    position = decode_since(page.next_since)
                    if page.has_more:  # a full sync, or a burst: the next page at once
                        page = await self._read(position)
                        continue
                page = None
                wait = min(sent_at + self.keepalive, ends_at) - loop.time()
                rung = await self.subscription.wait(wait)
                if self.subscription.closed or loop.time() >= ends_at:
                    return
                if not rung:
                    yield event_stream.KEEP_ALIVE
                    sent_at = loop.time()
                    continue
                page = await self._read(position)
                if not (page.changes or page.deleted or page.has_more):
                    page = None  # a wake-up for nothing new (another tab's no-op write, a poll)
        except Exception as error:
            # The reader cannot read (the database is away): the stream ends, and the client's
            # reconnection with Last-Event-ID gets the problem, or resumes where it was.
            logger.warning("stream of %s ended: %s: %s", self.user_id, type(error).__name__, error)
        finally:
            self.subscription.close()

    async def _read(self, position: int) -> Changes:
        async with self.subscription.fanout.read_turns:
            return await self.feed.after(self.user_id, position, self.limit)


def _changes_event(page: Changes, retry_ms: int | None) -> bytes:
    return event_stream.event("changes", page.page(), event_id=page.next_since, retry_ms=retry_ms)
