"""Wake-ups inside one process: "user U changed" reaches every open stream of U.

A wake-up carries no data: each stream reads the change feed from its own position, so a
wake-up that is lost, doubled or spurious can delay or repeat a read, never lose or reorder a
change. Where wake-ups come from (a PostgreSQL listener, a poll of revision counters) is the
caller's business; this module knows neither the database nor the handlers.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from service.errors import StreamsFull, TooManyStreams

logger = logging.getLogger(__name__)

Revisions = Callable[[list[str]], Awaitable[dict[str, int]]]
"""The latest revision of each of these users (absent: none yet)."""


class Subscription:
    """One open stream's doorbell: `wait` returns True when rung, False on a timeout."""

    def __init__(self, fanout: "Fanout", user_id: str) -> None:
        self.fanout, self.user_id = fanout, user_id
        self._rung = asyncio.Event()
        self.closed = False

    def ring(self) -> None:
        self._rung.set()

    async def wait(self, timeout: float) -> bool:
        if not self._rung.is_set():
            try:
                async with asyncio.timeout(max(timeout, 0)):
                    await self._rung.wait()
            except TimeoutError:
                return False
        self._rung.clear()
        return True

    def close(self) -> None:
        """Gives the stream's place back; safe to call twice."""
        if not self.closed:
            self.closed = True
            self.fanout._remove(self)


class Fanout:
    """The open streams of one process, by user, within a limit per user and in total."""

    def __init__(self, *, per_user: int, per_worker: int, concurrent_reads: int = 5) -> None:
        self.per_user, self.per_worker = per_user, per_worker
        self.read_turns = asyncio.Semaphore(concurrent_reads)
        """Streams woken together (every stream, after the listener reconnects) read the feed a
        few at a time, in turn, leaving the other pooled connections to requests, rather than
        all at once into the pool's timeout."""
        self._by_user: dict[str, set[Subscription]] = {}
        self._count = 0
        self._ending = False

    def open(self, user_id: str) -> Subscription:
        """A place for one more stream of `user_id`, or the problem that says why not."""
        if self._ending or self._count >= self.per_worker:
            raise StreamsFull(self.per_worker)
        streams = self._by_user.setdefault(user_id, set())
        if len(streams) >= self.per_user:
            raise TooManyStreams(self.per_user)
        subscription = Subscription(self, user_id)
        streams.add(subscription)
        self._count += 1
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        streams = self._by_user.get(subscription.user_id)
        if streams is not None and subscription in streams:
            streams.discard(subscription)
            self._count -= 1
            if not streams:
                del self._by_user[subscription.user_id]

    @property
    def open_streams(self) -> int:
        return self._count

    def users(self) -> list[str]:
        return list(self._by_user)

    def wake(self, user_id: str) -> None:
        for subscription in self._by_user.get(user_id, ()):
            subscription.ring()

    def wake_all(self) -> None:
        """After wake-ups may have been lost (a listener reconnected): every stream reads once."""
        for streams in self._by_user.values():
            for subscription in streams:
                subscription.ring()

    def end_all(self) -> None:
        """The process is stopping: every stream ends now, and no new one opens."""
        self._ending = True
        for streams in list(self._by_user.values()):
            for subscription in list(streams):
                subscription.close()
                subscription.ring()

    async def poll(self, seconds: float, revisions: Revisions) -> None:
        """Every `seconds`, one query for the revisions of the users with open streams; a user
        whose revision moved (or who is new to the poll) is woken. What a lost notification
        missed arrives within `seconds`; without a listener this is how changes arrive."""
        seen: dict[str, int | None] = {}
        while True:
            await asyncio.sleep(seconds)
            users = self.users()
            if not users:
                seen.clear()
                continue
            try:
                latest = await revisions(users)
            except Exception as error:  # the database is away: the next round tries again
                logger.warning("live updates: the revision poll failed: %s: %s", type(error).__name__, error)
                continue
            seen = {user: seen.get(user, -1) for user in users}  # users who left are forgotten
            for user in users:
                revision = latest.get(user)
                if revision != seen[user]:
                    seen[user] = revision
                    self.wake(user)
