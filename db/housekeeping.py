"""Deletes what has expired, idempotency keys and old tombstones, in small batches every few
minutes, so that no statement holds up a request for long."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from db import idempotency
from db.changes import purge_tombstones

logger = logging.getLogger(__name__)
BATCH = 1000


async def _tombstones(engine: AsyncEngine, seconds: float, batch: int) -> int:
    async with engine.begin() as connection:
        return await purge_tombstones(connection, seconds, batch)


async def purge_expired(engine: AsyncEngine, *, idempotency_key_seconds: float, tombstone_seconds: float) -> int:
    """One pass, batch after batch; how many keys and tombstones it deleted."""
    purges: list[tuple[Callable[[AsyncEngine, float, int], Awaitable[int]], float]] = [
        (idempotency.purge, idempotency_key_seconds),
        (_tombstones, tombstone_seconds),
    ]
    deleted = 0
    for purge, seconds in purges:
        while True:
            count = await purge(engine, seconds, BATCH)
            deleted += count
            if count < BATCH:
                break
    return deleted


async def purge_every(interval_seconds: float, engine: AsyncEngine, **horizons: float) -> None:
    """Purges until cancelled; a failed pass (the database away, say) waits for the next."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await purge_expired(engine, **horizons)
        except Exception as error:
            logger.warning("housekeeping pass failed: %s", error)
