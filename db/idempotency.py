"""Idempotency keys of creates (the IETF `Idempotency-Key` draft), kept per user in the same
transaction as the task they created, so a key never names a task that was not stored.

A key is claimed under a transaction-scoped advisory lock on (user, key): a second request with
the key while the first is still in its transaction does not wait for it, it is told the key
is in use (409). Keys older than their lifetime are ignored and purged by db/housekeeping.py.
"""

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from db.tables import idempotency_keys
from service.errors import IdempotencyKeyInUse, IdempotencyKeyReused

CREATED = 201


def _lock_id(user_id: str, key: str):
    return sa.func.hashtextextended(sa.literal(user_id) + "\n" + sa.literal(key), 0)


def _alive(seconds: float):
    return idempotency_keys.c.created_at > sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds)


async def claim(connection: AsyncConnection, user_id: str, key: str, fingerprint: str, seconds: float) -> dict | None:
    """Within a transaction: the task this key already created (a replay), or None if the key is
    free and now held by this transaction."""
    if not (await connection.execute(sa.select(sa.func.pg_try_advisory_xact_lock(_lock_id(user_id, key))))).scalar():
        raise IdempotencyKeyInUse()
    mine = sa.and_(idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key)
    stored = (
        await connection.execute(
            sa.select(idempotency_keys.c.fingerprint, idempotency_keys.c.body).where(mine, _alive(seconds))
        )
    ).first()
    if stored is None:
        await connection.execute(idempotency_keys.delete().where(mine))  # an expired use of the key, if any
        return None
    if stored.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    return stored.body


async def record(connection: AsyncConnection, user_id: str, key: str, fingerprint: str, task: dict) -> None:
    body = orjson.loads(orjson.dumps(task, default=str))
    values = {"user_id": user_id, "key": key, "fingerprint": fingerprint, "status": CREATED, "body": body}
    await connection.execute(idempotency_keys.insert().values(**values))


async def purge(connection: AsyncConnection, seconds: float, batch: int) -> int:
    """Deletes up to `batch` expired keys; how many it deleted."""
    expired = sa.select(idempotency_keys.c.user_id, idempotency_keys.c.key).where(~_alive(seconds)).limit(batch)
    pair = sa.tuple_(idempotency_keys.c.user_id, idempotency_keys.c.key)
    return (await connection.execute(idempotency_keys.delete().where(pair.in_(expired)))).rowcount
