"""PostgreSQL's LISTEN/NOTIFY as the change feed's doorbell: "user U changed", never the change.

One direct connection per process (never a pooled one: LISTEN needs its session, which a
transaction-mode pooler does not keep) listens on one channel and sends this process's
notifications. A write notifies after it has committed, as a statement of its own: NOTIFY
inside the write's transaction would take a cluster-wide lock at commit and serialise every
writer, and a full notification queue would make commits fail. Notifications waiting to be
sent are batched, one statement per round trip and at most one per BATCH_SECONDS, however many
writes come in meanwhile: a write in a quiet moment is announced at once, and under load a
statement (and a wake-up of this process) serves many writes instead of one.

A notification can be lost (the connection drops, the server restarts): after every
reconnection every stream of the process reads once (`on_reconnect`), and the streams' poll
of revision counters (service/fanout.py) catches the rest.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

import asyncpg
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

CHANNEL = "tasks_changes"
NOTIFY = f"SELECT pg_notify('{CHANNEL}', user_id) FROM unnest($1::text[]) AS user_id"
RECONNECT_SECONDS = (0.5, 5.0)  # first and longest wait between attempts, jittered
IDLE_CHECK_SECONDS = 30.0  # a silent connection is checked this often, so a dead one is replaced
BATCH_SECONDS = 0.005  # at most one batch per this long: a write in a quiet moment goes out at once


def listen_dsn(url: str) -> str:
    """A URL as providers give it (`postgres://…?sslmode=require`), as asyncpg takes it."""
    parsed = make_url(url).set(drivername="postgresql")
    query = {name: value for name, value in parsed.query.items() if name != "channel_binding"}  # libpq-only
    return parsed.set(query=query).render_as_string(hide_password=False)


class ChangeListener:
    """Runs (`run`) until cancelled: connects, listens, reconnects with backoff when lost."""

    def __init__(
        self,
        url: str,
        *,
        on_change: Callable[[str], None],
        on_reconnect: Callable[[], None],
        connect_timeout: float = 5.0,
    ) -> None:
        self.dsn = listen_dsn(url)
        self.on_change, self.on_reconnect = on_change, on_reconnect
        self.connect_timeout = connect_timeout
        self.connection: asyncpg.Connection | None = None
        self.connected = asyncio.Event()
        self._pending: set[str] = set()
        self._wanted = asyncio.Event()

    def changed(self, user_id: str) -> None:
        """Call after a write of `user_id`'s has committed: its notification goes out shortly.
        While nobody listens nothing is kept (the polls make up for it), so nothing piles up."""
        if self.connection is None:
            return
        self._pending.add(user_id)
        self._wanted.set()

    async def run(self) -> None:
        wait, first = RECONNECT_SECONDS[0], True
        while True:
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(
                    self.dsn,
                    timeout=self.connect_timeout,
                    statement_cache_size=0,
                    server_settings={"application_name": "tasks-api-listener"},
                )
            except Exception as error:  # unreachable, refused, misconfigured: the polls carry on meanwhile
                logger.warning("live updates: cannot listen (%s: %s); retrying", type(error).__name__, error)
                await asyncio.sleep(wait * random.uniform(0.5, 1.0))
                wait = min(wait * 2, RECONNECT_SECONDS[1])
                continue
            connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
            try:
                await connection.add_listener(CHANNEL, self._heard)
                self.connection, wait = connection, RECONNECT_SECONDS[0]
                self.connected.set()
                if not first:
                    logger.info("live updates: listening again; every stream reads once")
                self.on_reconnect()  # what was notified while nobody listened is read now
                first = False
                await self._send_until(lost)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                logger.warning("live updates: the listener was lost (%s: %s)", type(error).__name__, error)
            finally:
                self.connected.clear()
                self.connection = None
                with contextlib.suppress(Exception):
                    connection.terminate()
            await asyncio.sleep(RECONNECT_SECONDS[0] * random.uniform(0.5, 1.0))

    async def _send_until(self, lost: asyncio.Event) -> None:
        """Sends the notifications that come in, in batches, until the connection is lost."""
        lost_wait = asyncio.ensure_future(lost.wait())
        try:
            while True:
                wanted = asyncio.ensure_future(self._wanted.wait())
                await asyncio.wait({lost_wait, wanted}, timeout=IDLE_CHECK_SECONDS, return_when=asyncio.FIRST_COMPLETED)
                wanted.cancel()
                if lost.is_set():
                    return
                self._wanted.clear()
                users, self._pending = list(self._pending), set()
                sent_at = asyncio.get_running_loop().time()
                try:  # nothing to send for a while: a round trip proves the connection still there
                    async with asyncio.timeout(self.connect_timeout):
                        await (self.connection.execute(NOTIFY, users) if users else self.connection.execute("SELECT 1"))
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
                    # These wake-ups are lost; the other processes' polls make up for them.
                    logger.warning("live updates: the listener failed (%s: %s)", type(error).__name__, error)
                    return
                # Under load, what comes in meanwhile waits for the rest of the interval: one
                # statement, and one wake-up of this loop, for many writes instead of each.
                await asyncio.sleep(sent_at + BATCH_SECONDS - asyncio.get_running_loop().time())
        finally:
            lost_wait.cancel()

    def _heard(self, _connection, _pid, _channel, payload: str) -> None:
        self.on_change(payload)
