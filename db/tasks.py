"""Task queries. Every statement is scoped by the owner's user id; one statement per call, but
for a create with an idempotency key (db/idempotency.py), which is one transaction."""

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from db import idempotency
from db.tables import NO_DUE_DATE_LAST, PRIORITIES, priority_type, tasks
from service.errors import InvalidCursor, PreconditionFailed, TaskNotFound

ETAG = sa.func.format('"%s"', tasks.c.revision).label("etag")
"""A task's strong ETag: its revision, which the database moves on every real change."""
TASK_COLUMNS = [column for column in tasks.c if column.name != "revision"] + [ETAG]
TASK_FIELDS = [str(column.name) for column in TASK_COLUMNS]  # plain str keys for orjson

SORT_KEYS = {
    "created": tasks.c.created_at,
    "updated": tasks.c.updated_at,
    "title": sa.func.lower(tasks.c.title),
    "due_date": sa.func.coalesce(tasks.c.due_at, NO_DUE_DATE_LAST),
    "priority": tasks.c.priority,
}
"""What each `sort` orders by (then by id); each matches an index in `db/tables.py`."""


@dataclass(frozen=True)
class ListFilter:
    status: str
    q: str | None = None
    priority: str | None = None
    tag: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last row's sort key and id, for the sort it was made for."""

    sort: str
    order: str
    key: str | None
    id: str

    def encode(self) -> str:
        raw = json.dumps([self.sort, self.order, self.key, self.id], separators=(",", ":"), ensure_ascii=False)
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, *, sort: str, order: str) -> "Cursor":
        try:
            padded = token + "=" * (-len(token) % 4)
            made_for_sort, made_for_order, key, last_id = json.loads(base64.urlsafe_b64decode(padded))
            cursor = cls(made_for_sort, made_for_order, key, str(uuid.UUID(last_id)))
            cursor.boundary()
        except (ValueError, TypeError, OverflowError, RecursionError, binascii.Error):
            raise InvalidCursor("The cursor is not one this service made; start again without it.") from None
        if (cursor.sort, cursor.order) != (sort, order):
            raise InvalidCursor("The cursor belongs to another sort or order; start again without it.")
        return cursor

    def boundary(self):
        """The row position to continue after, as SQL values; ValueError if it cannot be one."""
        key = self.key
        if key is None:
            if self.sort != "due_date":
                raise ValueError("only due dates may be missing")
            key = NO_DUE_DATE_LAST
        elif not isinstance(key, str) or "\x00" in key:
            raise ValueError("not a sort key")
        elif self.sort in {"created", "updated", "due_date"}:
            key = datetime.fromisoformat(key).astimezone(UTC)
        elif self.sort == "priority":
            if key not in PRIORITIES:
                raise ValueError("not a priority")
            key = sa.literal(key, priority_type)
        else:
            key.encode("utf-8")
        return sa.tuple_(key, uuid.UUID(self.id))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _cursor_key(sort: str, row) -> str | None:
    value = {
        "created": row.created_at,
        "updated": row.updated_at,
        "title": row.sort_key,
        "due_date": row.due_at,
        "priority": row.priority,
    }[sort]
    return value.isoformat() if isinstance(value, datetime) else value


def list_statement(
    user_id: str, where: ListFilter, *, sort: str, order: str, limit: int, after: Cursor | None = None
) -> sa.Select:
    """The user's tasks matching `where`, in (sort key, id) order, after the cursor's row."""
    key = SORT_KEYS[sort]
    descending = order == "desc"
    statement = sa.select(*TASK_COLUMNS, key.label("sort_key")).where(tasks.c.user_id == user_id)
    if where.status != "all":
        statement = statement.where(tasks.c.completed.is_(where.status == "completed"))
    if where.q is not None:
        pattern = f"%{_escape_like(where.q)}%"
        statement = statement.where(
            sa.or_(tasks.c.title.ilike(pattern, escape="\\"), tasks.c.description.ilike(pattern, escape="\\"))
        )
    if where.priority is not None:
        statement = statement.where(tasks.c.priority == where.priority)
    if where.tag is not None:
        statement = statement.where(tasks.c.tags.contains([where.tag]))
    if where.due_before is not None:
        statement = statement.where(tasks.c.due_at < where.due_before)
    if where.due_after is not None:
        statement = statement.where(tasks.c.due_at >= where.due_after)
    if after is not None:
        position = sa.tuple_(key, tasks.c.id)
        statement = statement.where(position < after.boundary() if descending else position > after.boundary())
    direction = sa.desc if descending else sa.asc
    return statement.order_by(direction(key), direction(tasks.c.id)).limit(limit)


class TaskStore:
    """The tasks of every user, reached only through a user id. A write may be conditional on
    the task's ETag being one of `if_match`; the check is part of the write's own statement."""

    def __init__(self, engine: AsyncEngine, *, idempotency_key_seconds: float = 24 * 3600) -> None:
        self.engine = engine
        self.idempotency_key_seconds = idempotency_key_seconds

    def _owned(self, user_id: str, task_id: uuid.UUID, if_match: list[str] | None = None):
        condition = sa.and_(tasks.c.user_id == user_id, tasks.c.id == task_id)
        return condition if if_match is None else sa.and_(condition, ETAG.element.in_(if_match))

    async def _one(self, statement) -> dict | None:
        async with self.engine.begin() as connection:
            row = (await connection.execute(statement)).first()
        return dict(zip(TASK_FIELDS, row, strict=False)) if row is not None else None

    async def _missed(self, user_id: str, task_id: uuid.UUID, if_match: list[str] | None) -> NoReturn:
        """Why a write found no row: no such task (404), or another ETag than the caller's (412)."""
        current = None
        if if_match is not None:
            async with self.engine.connect() as connection:
                current = (await connection.execute(sa.select(ETAG).where(self._owned(user_id, task_id)))).scalar()
        if current is None:
            raise TaskNotFound()
        raise PreconditionFailed(current)

    async def create(self, user_id: str, fields: dict, *, idempotency_key: tuple[str, str] | None = None):
        """The new task; with an idempotency key (key, fingerprint of the request), the task
        the key first created and True if this is a replay."""
        statement = tasks.insert().values(user_id=user_id, **fields).returning(*TASK_COLUMNS)
        if idempotency_key is None:
            return await self._one(statement), False
        key, fingerprint = idempotency_key
        async with self.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="READ COMMITTED")
            async with connection.begin():
                earlier = await idempotency.claim(connection, user_id, key, fingerprint, self.idempotency_key_seconds)
                if earlier is not None:
                    return earlier, True
                task = dict(zip(TASK_FIELDS, (await connection.execute(statement)).one(), strict=False))
                await idempotency.record(connection, user_id, key, fingerprint, task)
        return task, False

    async def get(self, user_id: str, task_id: uuid.UUID) -> dict:
        task = await self._one(sa.select(*TASK_COLUMNS).where(self._owned(user_id, task_id)))
        if task is None:
            raise TaskNotFound()
        return task

    async def update(self, user_id: str, task_id: uuid.UUID, fields: dict, *, if_match: list[str] | None = None):
        """Sets the given fields; the database keeps `updated_at`, `completed_at` and the ETag right."""
        where = self._owned(user_id, task_id, if_match)
        if fields:
            statement = tasks.update().where(where).values(**fields).returning(*TASK_COLUMNS)
        else:
            statement = sa.select(*TASK_COLUMNS).where(where)
        task = await self._one(statement)
        if task is None:
            await self._missed(user_id, task_id, if_match)
        return task

    async def delete(self, user_id: str, task_id: uuid.UUID, *, if_match: list[str] | None = None) -> None:
        statement = tasks.delete().where(self._owned(user_id, task_id, if_match)).returning(tasks.c.id)
        if await self._one(statement) is None:
            await self._missed(user_id, task_id, if_match)

    async def page(
        self, user_id: str, where: ListFilter, *, sort: str, order: str, limit: int, cursor: str | None
    ) -> tuple[list[dict], str | None]:
        """One page in (sort key, id) order, and the cursor of the next page if there is one."""
        after = Cursor.decode(cursor, sort=sort, order=order) if cursor is not None else None
        statement = list_statement(user_id, where, sort=sort, order=order, limit=limit + 1, after=after)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = Cursor(sort, order, _cursor_key(sort, last), str(last.id)).encode()
        items = [dict(zip(TASK_FIELDS, row, strict=False)) for row in rows]  # the task columns come first
        return items, next_cursor
