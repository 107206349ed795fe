"""The change feed: a user's tasks changed, and ids of those deleted, after a revision.

Revisions are per user and commit in order (migrations/versions/0002: each write takes the
user's next revision under the lock of the user's counter row, until it commits). So the rows
a reader sees with a revision above `since` are every change after `since`, and a change that
commits after the read has a higher revision than any the reader saw: it comes in the next
call. Tombstones are kept for a horizon; a `since` older than the purged ones is expired.
"""

import base64
import binascii
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.tables import task_tombstones, tasks, user_revisions
from db.tasks import TASK_COLUMNS, task_of
from service.errors import InvalidSyncToken, SyncTokenExpired

TOKEN_PREFIX = "r"
MAX_REVISION = 2**63 - 1  # revisions are bigint


def encode_since(revision: int) -> str:
    return base64.urlsafe_b64encode(f"{TOKEN_PREFIX}{revision}".encode()).decode().rstrip("=")


def decode_since(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        if not text.startswith(TOKEN_PREFIX) or not text[1:].isdigit() or len(text) > 20:
            raise ValueError(token)
        revision = int(text[1:])
        if revision > MAX_REVISION:
            raise ValueError(token)
        return revision
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidSyncToken() from None


@dataclass(frozen=True)
class Changes:
    changes: list[dict]
    deleted: list[str]
    next_since: str
    has_more: bool

    def page(self) -> dict:
        """The page as `listChanges` answers it and each event of `streamChanges` carries it."""
        return {
            "changes": self.changes,
            "deleted": self.deleted,
            "next_since": self.next_since,
            "has_more": self.has_more,
        }


def feed_statement(user_id: str, since: int, limit: int) -> sa.CompoundSelect:
    """The first `limit` changes and deletions after `since`, in revision order. Each part
    reads at most `limit` rows from its (user_id, revision) index, in order, and the page is
    the first of the two merged: never a sort of every row after `since`."""
    changed = (
        sa.select(tasks.c.revision, sa.false(), *TASK_COLUMNS)
        .where(tasks.c.user_id == user_id, tasks.c.revision > since)
        .order_by(tasks.c.revision)
        .limit(limit)
    )
    blanks = [sa.null()] * (len(TASK_COLUMNS) - 1)  # a tombstone has only the id, first of TASK_COLUMNS
    removed = (
        sa.select(task_tombstones.c.revision, sa.true(), task_tombstones.c.task_id, *blanks)
        .where(task_tombstones.c.user_id == user_id, task_tombstones.c.revision > since)
        .order_by(task_tombstones.c.revision)
        .limit(limit)
    )
    return sa.union_all(changed, removed).order_by(sa.literal_column("revision")).limit(limit)


class ChangeFeed:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def after(self, user_id: str, since: int | None, limit: int) -> Changes:
        """Up to `limit` changes after revision `since` (None: from the start, a full sync, which
        purged tombstones cannot spoil), oldest first, in one snapshot."""
        full_sync, since = since is None, since or 0
        feed = feed_statement(user_id, since, limit + 1)
        purged = sa.select(user_revisions.c.purged_through).where(user_revisions.c.user_id == user_id)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(feed)).all()
            purged_through = (await connection.execute(purged)).scalar() or 0  # read after: a purge in between shows
        if not full_sync and since < purged_through:
            raise SyncTokenExpired()
        page = rows[:limit]
        changes = [task_of(row[2:]) for row in page if not row[1]]
        deleted = [str(row[2]) for row in page if row[1]]
        last = page[-1][0] if page else since
        return Changes(changes, deleted, encode_since(last), has_more=len(rows) > limit)

    async def revisions(self, user_ids: list[str]) -> dict[str, int]:
        """The latest revision of each of these users who has one: the live streams' poll, one
        query for every stream of the process."""
        statement = sa.select(user_revisions.c.user_id, user_revisions.c.revision).where(
            user_revisions.c.user_id == sa.any_(sa.bindparam("users", type_=ARRAY(sa.Text)))
        )
        async with self.engine.connect() as connection:
            rows = await connection.execute(statement, {"users": user_ids})
            return {user_id: revision for user_id, revision in rows}


async def purge_tombstones(connection: AsyncConnection, seconds: float, batch: int) -> int:
    """Deletes up to `batch` tombstones older than `seconds` and records, per user, the newest
    revision gone, so that a `since` before it is known to have missed deletions."""
    old = (
        sa.select(task_tombstones.c.user_id, task_tombstones.c.revision)
        .where(task_tombstones.c.deleted_at < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds))
        .limit(batch)
    )
    pair = sa.tuple_(task_tombstones.c.user_id, task_tombstones.c.revision)
    gone = task_tombstones.delete().where(pair.in_(old)).returning(*task_tombstones.c).cte("gone")
    newest = (
        sa.select(gone.c.user_id, sa.func.max(gone.c.revision).label("revision"), sa.func.count().label("count"))
        .group_by(gone.c.user_id)
        .subquery()
    )
    statement = (
        user_revisions.update()
        .where(user_revisions.c.user_id == newest.c.user_id)
        .values(purged_through=sa.func.greatest(user_revisions.c.purged_through, newest.c.revision))
        .returning(newest.c.count)
    )
    return sum(count for (count,) in await connection.execute(statement))
