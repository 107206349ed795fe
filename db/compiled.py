"""The hot path: statements built with SQLAlchemy once, run on asyncpg directly.

SQLAlchemy's Core builds, compiles and cache-keys a statement on every execution, and wraps
every call in a greenlet; for the one-statement operations of the API that was half of the
service's time per request. Here a statement is built once per shape (which filters, which
sort), compiled once for asyncpg, and each request only fills in the values and runs it on one
of the engine's pooled connections, through asyncpg's own prepared-statement cache.
"""

import asyncio
import collections
import time
import typing as t

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import dialect as AsyncpgDialect
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from db import engine as db_engine

DIALECT = AsyncpgDialect()


class Compiled:
    """One statement's SQL for asyncpg and the order its named values go in."""

    def __init__(self, statement: sa.ClauseElement) -> None:
        compiled = statement.compile(dialect=DIALECT)
        self.sql = str(compiled)
        defaults = {name: bind.value for name, bind in compiled.binds.items()}
        processors = compiled._bind_processors  # the dialect's value conversions (enums, arrays)
        self._slots = [(name, defaults.get(name), processors.get(name)) for name in compiled.positiontup]

    def arguments(self, values: dict) -> list:
        """The positional arguments for `values` by bind name; literals keep their compiled value."""
        arguments = []
        for name, default, process in self._slots:
            value = values.get(name, default)
            arguments.append(process(value) if process is not None and value is not None else value)
        return arguments


def _statement_error(exc: BaseException) -> bool:
    """A statement the server refused (a constraint, say): the connection itself is fine."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    canceled = sqlstate == "57014"  # by the server's statement_timeout: the connection is fine
    return isinstance(exc, asyncpg.PostgresError) and (canceled or not sqlstate.startswith(("08", "57")))


WARM_IDLE_SECONDS = 1.0
"""How long a connection the hot path just used stays checked out, for its next request."""
WARM_LIFE_SECONDS = 60.0
"""How long it may go from request to request before the engine's pool sees it again (its
recycle and its ping after idle apply there)."""


class Turns:
    """The hot path's way to the engine's connections: first come, first served, and the
    connection a request used kept for the next one while requests keep coming.

    The pool's own queue lets a request that just arrived take a connection another has been
    waiting for, again and again: at 100 connections on a pool of 10, some requests waited
    seconds (p99 1,047 ms against a p50 of 30 ms). Here turns are handed out in arrival order,
    and one timer stands for every waiting request's deadline (a timer per waiting request,
    as `asyncio.timeout` around a semaphore makes, cost 3% of a request's instructions at 100
    connections).

    A check-out from the pool and a check-in each run in a greenlet of their own (SQLAlchemy's
    bridge to asyncio; Python maps and unmaps a 16 KiB frame stack for each): in process, 10% of
    the instructions of a list request (callgrind). A connection given back goes onto a stack
    here instead, and the next request takes it without the pool, while it has been idle less
    than a second (and less than the engine's ping-after-idle) and in use less than a minute;
    otherwise it goes back to the pool, as does every one a second after requests stop.

    One of the pool's connections is left to its other users (keyed creates, the change feed,
    readiness, housekeeping): requests take turns on the others (all of a pool of one), and a
    connection is kept only while the requests in turn and the kept connections leave that one.
    So under full load, the connection a request gives back goes to the next request in turn,
    not through the pool: when the requests could take every connection, none was ever kept,
    and at 100 connections a request cost 14% more instructions than at 10 (callgrind, get)."""

    def __init__(self, engine: AsyncEngine) -> None:
        pool = engine.sync_engine.pool  # its size, overflow and checkout timeout, as configured
        permits = pool.size() + max(pool._max_overflow, 0)
        self.engine = engine
        self.free = max(1, permits - 1)  # turns nobody holds
        self.waiting: collections.deque[tuple[asyncio.Future, float]] = collections.deque()  # (turn, give up at)
        self.timeout = pool._timeout
        self._expiry: asyncio.TimerHandle | None = None  # when the longest-waiting request gives up
        self.warm: list[tuple[PoolProxiedConnection, float, float]] = []  # (connection, idle since, taken at)
        self.warm_limit = permits - 1
        self.in_turn = 0  # requests holding a turn
        self.idle_limit = min(WARM_IDLE_SECONDS, db_engine.IDLE_BEFORE_PING_SECONDS)
        self._sweep: asyncio.TimerHandle | None = None

    def turn(self) -> "Turns":
        """`async with turns.turn():` waits its turn as long as the pool would wait for a
        connection, then gives up as it would; the turn ends with the block. (The context
        manager is this object, which holds no state of the turn: a generator-based one cost an
        async generator and its finalizer hook per statement.)"""
        return self

    async def __aenter__(self) -> None:
        if self.free and not self.waiting:
            self.free -= 1
        else:
            await self._wait()
        self.in_turn += 1

    async def __aexit__(self, *_exc) -> None:
        self.in_turn -= 1
        self._hand_on()

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        self.waiting.append((turn, loop.time() + self.timeout))
        if self._expiry is None:
            self._expiry = loop.call_at(self.waiting[0][1], self._expire)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._hand_on()  # it was handed a turn as it was cancelled: the next one's
            raise

    def _hand_on(self) -> None:
        """A turn ends: the request that has waited longest takes it, else it is free."""
        while self.waiting:
            turn, _ = self.waiting.popleft()
            if not turn.done():  # not cancelled, not given up
                turn.set_result(None)
                return
        self.free += 1

    def _expire(self) -> None:
        """The requests that waited as long as the pool would have give up; then the timer is set
        for the next one in line (arrival order is deadline order)."""
        self._expiry = None
        loop = asyncio.get_running_loop()
        while self.waiting and self.waiting[0][1] <= loop.time():
            turn, _ = self.waiting.popleft()
            if not turn.done():
                turn.set_exception(PoolTimeout(f"no connection free within {self.timeout} s, waiting in turn"))
        if self.waiting:
            self._expiry = loop.call_at(self.waiting[0][1], self._expire)

    async def take(self) -> tuple[PoolProxiedConnection, float]:
        """A connection and when it was taken from the pool: a warm one if one is fresh enough."""
        now = time.monotonic()
        while self.warm:
            pooled, idle_since, taken_at = self.warm.pop()
            if t.cast(asyncpg.Connection, pooled.driver_connection).is_closed():  # the server ended it
                pooled.invalidate()
            elif now - idle_since < self.idle_limit and now - taken_at < WARM_LIFE_SECONDS:
                return pooled, taken_at
            await greenlet_spawn(pooled.close)
        return await self.engine.raw_connection(), now

    async def give_back(self, pooled: PoolProxiedConnection, taken_at: float, *, healthy: bool) -> None:
        """Called in the request's turn: `in_turn` counts it, and the connection it gives back."""
        if healthy and self.in_turn + len(self.warm) <= self.warm_limit:
            self.warm.append((pooled, time.monotonic(), taken_at))
            if self._sweep is None:
                self._sweep = asyncio.get_running_loop().call_later(self.idle_limit, self._start_sweep)
            return
        await greenlet_spawn(pooled.close)

    def _start_sweep(self) -> None:
        self._sweep = None
        if self.warm:
            asyncio.get_running_loop().create_task(self.cool(self.idle_limit))

    async def cool(self, idle_seconds: float = 0.0) -> None:
        """Gives the connections idle `idle_seconds` or more back to the pool (all of them by default)."""
        now = time.monotonic()
        stale = [entry for entry in self.warm if now - entry[1] >= idle_seconds]
        self.warm = [entry for entry in self.warm if now - entry[1] < idle_seconds]
        for pooled, _, _ in stale:
            await greenlet_spawn(pooled.close)
        if self.warm and self._sweep is None:  # again when the longest idle of those left is due
            due = min(idle_since for _, idle_since, _ in self.warm) + self.idle_limit - time.monotonic()
            self._sweep = asyncio.get_running_loop().call_later(max(due, 0.0), self._start_sweep)


class driver_connection:  # a context manager named as the function it was: `async with driver_connection(...)`
    """One of the turns' engine's pooled connections as asyncpg's own, in turn. `in_transaction` for a
    pooler in transaction mode, where asyncpg's prepare and execute must be one transaction.
    A connection lost, timed out or interrupted is never handed out again; one whose statement
    failed is. (A class, not a generator-based context manager: that cost an async generator
    and its finalizer hook per statement.)"""

    __slots__ = ("in_transaction", "pooled", "taken_at", "turns")

    def __init__(self, turns: Turns, *, in_transaction: bool) -> None:
        self.turns, self.in_transaction = turns, in_transaction  # the connections are the turns' engine's

    async def __aenter__(self) -> asyncpg.Connection:
        await self.turns.__aenter__()
        try:
            self.pooled, self.taken_at = await self.turns.take()
        except BaseException:
            await self.turns.__aexit__()
            raise
        connection = t.cast(asyncpg.Connection, self.pooled.driver_connection)
        if self.in_transaction:  # BEGIN as the engine wants it (db/engine.py), in one round trip
            try:
                await connection.execute(self.pooled.info.get("begin", "BEGIN"))
            except BaseException as exc:
                await self._end(exc)
                raise
        return connection

    async def __aexit__(self, _type, exc: BaseException | None, _traceback) -> None:
        if self.in_transaction:
            connection = t.cast(asyncpg.Connection, self.pooled.driver_connection)
            try:
                if exc is None:
                    await connection.execute("COMMIT")
                elif _statement_error(exc):  # else the connection is invalidated, its transaction with it
                    await connection.execute("ROLLBACK")
            except BaseException as error:
                await self._end(error)
                raise
        await self._end(exc)

    async def _end(self, exc: BaseException | None) -> None:
        """Gives the connection back (invalidated unless all went well or only a statement
        failed), then the turn."""
        healthy = exc is None or _statement_error(exc)
        if not healthy:
            self.pooled.invalidate(exc if isinstance(exc, Exception) else None)
        try:
            await self.turns.give_back(self.pooled, self.taken_at, healthy=healthy)
        finally:
            await self.turns.__aexit__()
