"""Idempotency keys of creates (the IETF `Idempotency-Key` draft), kept per user in the same
transaction as the task they created, so a key never names a task that was not stored.

A key is claimed under a transaction-scoped advisory lock on (user, key): a second request with
the key while the first is still in its transaction does not wait for it, it is told the key
is in use (409). Keys older than their lifetime are ignored and purged by db/housekeeping.py.

A user holds at most a quota of keys (IDEMPOTENCY_KEY_QUOTA): `key_count` on their counter row
counts the keys stored, raised by a claim of a new key only while under the quota (the row's
lock orders concurrent claims) and lowered by whatever deletes keys. A claim that finds the
count at the quota first forgets the user's expired keys, so only live keys hold it full. Keys
are always deleted before their user's counter row is locked, by claims and purges alike, so
the two cannot deadlock.
"""

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.tables import idempotency_keys, user_revisions
from service.errors import IdempotencyKeyInUse, IdempotencyKeyReused, QuotaExceeded

CREATED = 201
QUOTA = "idempotency_keys"
"""The quota's name in a QUOTA_EXCEEDED problem (the contract's Quota)."""


def _lock_id(user_id: str, key: str):
    return sa.func.hashtextextended(sa.literal(user_id) + "\n" + sa.literal(key), 0)


def _alive(seconds: float):
    return idempotency_keys.c.created_at > sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds)


async def claim(
    connection: AsyncConnection, user_id: str, key: str, fingerprint: str, seconds: float, quota: int
) -> dict | None:
    """Within a transaction: the task this key already created (a replay, never refused), or
    None if the key is free and now held by this transaction, counted against `quota`."""
    if not (await connection.execute(sa.select(sa.func.pg_try_advisory_xact_lock(_lock_id(user_id, key))))).scalar():
        raise IdempotencyKeyInUse()
    mine = sa.and_(idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key)
    columns = idempotency_keys.c.fingerprint, idempotency_keys.c.body, _alive(seconds).label("alive")
    # Locked, so that no purge deletes (and uncounts) an expired row this claim replaces.
    stored = (await connection.execute(sa.select(*columns).where(mine).with_for_update())).first()
    if stored is None:
        await _count_new_key(connection, user_id, seconds, quota)
    elif not stored.alive:  # an expired use of the key, counted: `record` puts the new one in its place
        await connection.execute(idempotency_keys.delete().where(mine))
    elif stored.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    else:
        return stored.body
    return None


async def _count_new_key(connection: AsyncConnection, user_id: str, seconds: float, quota: int) -> None:
    held = sa.select(user_revisions.c.key_count).where(user_revisions.c.user_id == user_id)
    if ((await connection.execute(held)).scalar() or 0) >= quota:
        await forget_expired(connection, user_id, seconds)  # at most the quota's worth of rows
    counted = (
        pg_insert(user_revisions)
        .values(user_id=user_id, revision=0, key_count=1)
        .on_conflict_do_update(
            index_elements=[user_revisions.c.user_id],
            set_={"key_count": user_revisions.c.key_count + 1},
            where=user_revisions.c.key_count < quota,
        )
        .returning(user_revisions.c.user_id)
    )
    if (await connection.execute(counted)).first() is None:
        raise QuotaExceeded(QUOTA, quota)  # the transaction, and so the claim, is rolled back


async def record(connection: AsyncConnection, user_id: str, key: str, fingerprint: str, task: dict) -> None:
    body = orjson.loads(orjson.dumps(task, default=str))
    values = {"user_id": user_id, "key": key, "fingerprint": fingerprint, "status": CREATED, "body": body}
    await connection.execute(idempotency_keys.insert().values(**values))


async def forget_expired(connection: AsyncConnection, user_id: str, seconds: float) -> int:
    """Deletes the user's expired keys, then lowers their count by as many; how many."""
    mine = idempotency_keys.c.user_id == user_id
    gone = await connection.execute(idempotency_keys.delete().where(mine, ~_alive(seconds)))
    if gone.rowcount:
        counter = user_revisions.update().where(user_revisions.c.user_id == user_id)
        await connection.execute(counter.values(key_count=user_revisions.c.key_count - gone.rowcount))
    return gone.rowcount


async def purge(engine: AsyncEngine, seconds: float, batch: int) -> int:
    """Deletes every expired key of the users of up to `batch` expired keys, one user per
    transaction (their count with them); how many it deleted."""
    async with engine.connect() as connection:
        expired = sa.select(idempotency_keys.c.user_id).where(~_alive(seconds)).limit(batch)
        users = sorted(set((await connection.execute(expired)).scalars()))
    deleted = 0
    for user_id in users:
        async with engine.begin() as connection:
            deleted += await forget_expired(connection, user_id, seconds)
    return deleted
