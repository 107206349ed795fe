"""Task queries. Every statement is scoped by the owner's user id; one statement per call, but
for a create with an idempotency key (db/idempotency.py), which is one transaction.

Each statement is built once per shape (which filters, which fields, conditional or not) and
run through `db/compiled.py`: a request only supplies the values."""

import base64
import binascii
import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, TIMESTAMP, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from db import idempotency
from db.compiled import Compiled, Turns, driver_connection
from db.custom_plans import CustomPlans
from db.tables import NO_DUE_DATE_LAST, PRIORITIES, priority_type, tag_keys, tasks, user_revisions, user_tag_keys
from service.errors import InvalidCursor, PreconditionFailed, QuotaExceeded, TaskNotFound

_QUOTE = sa.literal_column("'\"'", sa.Text)
ETAG = (_QUOTE + sa.cast(tasks.c.revision, sa.Text) + _QUOTE).label("etag")
"""A task's strong ETag: its revision, which the database moves on every real change. Built of
IMMUTABLE operators (not `format()`, which is STABLE), as Citus requires of an expression in a
distributed statement's RETURNING or WHERE."""
TASK_COLUMNS = [column for column in tasks.c if column.name != "revision"] + [ETAG]


def task_of(row) -> dict:
    """A row that starts with TASK_COLUMNS as the contract's Task.

    Written out as a dict display, which builds the dict at its final size in one step: half the
    instructions of `dict(zip(names, row))` (callgrind), for every task of every page. A test
    holds it to TASK_COLUMNS, names and order."""
    return {
        "id": row[0],
        "user_id": row[1],
        "title": row[2],
        "description": row[3],
        "completed": row[4],
        "completed_at": row[5],
        "due_at": row[6],
        "priority": row[7],
        "tags": row[8],
        "created_at": row[9],
        "updated_at": row[10],
        "etag": row[11],
    }


SORT_KEYS = {
    "created": tasks.c.created_at,
    "updated": tasks.c.updated_at,
    "title": sa.func.lower(tasks.c.title),
    "due_date": sa.func.coalesce(tasks.c.due_at, NO_DUE_DATE_LAST),
    "priority": tasks.c.priority,
}
"""What each `sort` orders by (then by id); each matches an index in `db/tables.py`."""

_SORT_KEY_TYPES = {
    "created": TIMESTAMP(timezone=True),
    "updated": TIMESTAMP(timezone=True),
    "title": sa.Text(),
    "due_date": TIMESTAMP(timezone=True),
    "priority": priority_type,
}


@dataclass(frozen=True)
class ListFilter:
    status: str
    q: str | None = None
    priority: str | None = None
    tag: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None

    def values(self, user_id: str) -> dict:
        """The filter's values by bind name, for the user's tasks; a missing one leaves its condition out."""
        values = {
            "pattern": None if self.q is None else f"%{_escape_like(self.q)}%",
            "priority": self.priority,
            "tags": None if self.tag is None else [self.tag],
            "tag_keys": None if self.tag is None else tag_keys(user_id, [self.tag]),
            "due_before": self.due_before,
            "due_after": self.due_after,
        }
        return {name: value for name, value in values.items() if value is not None}


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

    def boundary(self) -> dict:
        """The row position to continue after, as bind values; ValueError if it cannot be one."""
        key = self.key
        if key is None:
            if self.sort != "due_date":
                raise ValueError("only due dates may be missing")
        elif not isinstance(key, str) or "\x00" in key:
            raise ValueError("not a sort key")
        elif self.sort in {"created", "updated", "due_date"}:
            key = datetime.fromisoformat(key).astimezone(UTC)
        elif self.sort == "priority":
            if key not in PRIORITIES:
                raise ValueError("not a priority")
        else:
            key.encode("utf-8")
        return {"after_key": key, "after_id": uuid.UUID(self.id)}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_CURSOR_KEY_COLUMNS = {
    "created": "created_at",
    "updated": "updated_at",
    "title": "sort_key",  # lower(title), selected for a page by title only
    "due_date": "due_at",
    "priority": "priority",
}


def _cursor_key(sort: str, row) -> str | None:
    value = row[_CURSOR_KEY_COLUMNS[sort]]
    return value.isoformat() if isinstance(value, datetime) else value


def list_statement(status: str, sort: str, order: str, filters: frozenset[str], after: bool) -> sa.Select:
    """The tasks of the user `:user_id` with the given `status`, in (sort key, id) order, at
    most `:limit`; `filters` names the bind values that narrow it (see `ListFilter.values`),
    `after` continues after the row (`:after_key`, `:after_id`)."""
    key = SORT_KEYS[sort]
    descending = order == "desc"
    # A title's sort key, lower(title), is the one not among the task's columns: a page by
    # another sort selects only those (a second copy of a timestamp is a second one to decode).
    columns = [*TASK_COLUMNS, key.label("sort_key")] if sort == "title" else TASK_COLUMNS
    statement = sa.select(*columns).where(tasks.c.user_id == sa.bindparam("user_id"))
    if status != "all":
        statement = statement.where(tasks.c.completed.is_(status == "completed"))
    if "pattern" in filters:
        pattern = sa.bindparam("pattern", type_=sa.Text)
        statement = statement.where(
            sa.or_(tasks.c.title.ilike(pattern, escape="\\"), tasks.c.description.ilike(pattern, escape="\\"))
        )
    if "priority" in filters:
        statement = statement.where(tasks.c.priority == sa.bindparam("priority", type_=priority_type))
    if "tag_keys" in filters:  # the (user, tag) keys of db/tables.py: the user's rows with the tag
        statement = statement.where(user_tag_keys.contains(sa.bindparam("tag_keys", type_=ARRAY(sa.Text))))
        # The same, cheap to test on a row (PostgreSQL tests it first): a walk by the sort key
        # computes a row's keys only for the rows that have the tag.
        statement = statement.where(tasks.c.tags.contains(sa.bindparam("tags", type_=ARRAY(sa.Text))))
    if "due_before" in filters:  # as the due_date index has it (no due date: never before)
        due_before = sa.bindparam("due_before", type_=TIMESTAMP(timezone=True))
        statement = statement.where(SORT_KEYS["due_date"] < due_before)
    if "due_after" in filters:
        statement = statement.where(tasks.c.due_at >= sa.bindparam("due_after", type_=TIMESTAMP(timezone=True)))
    if after:
        after_key = sa.bindparam("after_key", type_=_SORT_KEY_TYPES[sort])
        if sort == "due_date":
            after_key = sa.func.coalesce(after_key, NO_DUE_DATE_LAST)
        boundary = sa.tuple_(after_key, sa.bindparam("after_id", type_=UUID(as_uuid=True)))
        position = sa.tuple_(key, tasks.c.id)
        statement = statement.where(position < boundary if descending else position > boundary)
    direction = sa.desc if descending else sa.asc
    limit = sa.bindparam("limit", type_=sa.Integer)
    return statement.order_by(direction(key), direction(tasks.c.id)).limit(limit)


def _owned(conditional: bool = False):
    """The task `:task_id` of the user `:user_id`; if `conditional`, only at a revision in `:if_match`."""
    condition = sa.and_(
        tasks.c.user_id == sa.bindparam("user_id"), tasks.c.id == sa.bindparam("task_id", type_=UUID(as_uuid=True))
    )
    if conditional:
        condition = sa.and_(condition, ETAG.element == sa.any_(sa.bindparam("if_match", type_=ARRAY(sa.Text))))
    return condition


def _new_values(fields: frozenset[str]) -> dict:
    return {name: sa.bindparam(name, type_=tasks.c[name].type) for name in sorted(fields)}


@functools.cache
def list_query(status: str, sort: str, order: str, filters: frozenset[str], after: bool) -> Compiled:
    return Compiled(list_statement(status, sort, order, filters, after))


@functools.cache
def _get() -> Compiled:
    return Compiled(sa.select(*TASK_COLUMNS).where(_owned()))


@functools.cache
def _etag() -> Compiled:
    return Compiled(sa.select(ETAG).where(_owned()))


@functools.cache
def _insert(fields: frozenset[str]) -> sa.Insert:
    """The new task, if its user holds fewer than `:task_quota` tasks; else no row. The count on
    the user's counter row is raised first, only while under the quota, and that row stays
    locked until the create commits: concurrent creates are counted one after the other."""
    counted = (
        pg_insert(user_revisions)
        .values(user_id=sa.bindparam("user_id"), revision=0, task_count=1)
        .on_conflict_do_update(
            index_elements=[user_revisions.c.user_id],
            set_={"task_count": user_revisions.c.task_count + 1},
            where=user_revisions.c.task_count < sa.bindparam("task_quota", type_=sa.BigInteger),
        )
        .returning(user_revisions.c.user_id)
        .cte("counted")
    )
    new = _new_values(fields)
    source = sa.select(counted.c.user_id, *new.values())
    return tasks.insert().from_select(["user_id", *new], source).returning(*TASK_COLUMNS)


@functools.cache
def _insert_compiled(fields: frozenset[str]) -> Compiled:
    return Compiled(_insert(fields))


@functools.cache
def _update(fields: frozenset[str], conditional: bool) -> Compiled:
    if not fields:  # nothing to set: the task as it is, under the same conditions
        return Compiled(sa.select(*TASK_COLUMNS).where(_owned(conditional)))
    return Compiled(tasks.update().where(_owned(conditional)).values(**_new_values(fields)).returning(*TASK_COLUMNS))


@functools.cache
def _delete(conditional: bool) -> Compiled:
    return Compiled(tasks.delete().where(_owned(conditional)).returning(tasks.c.id))


class TaskStore:
    """The tasks of every user, reached only through a user id. A write may be conditional on
    the task's ETag being one of `if_match`; the check is part of the write's own statement.
    `in_transactions` as the engine is set up: behind a transaction-mode pooler. `on_change` is
    told the user after each write has committed (the live streams' wake-up, db/listener.py)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        idempotency_key_seconds: float = 24 * 3600,
        in_transactions: bool = False,
        on_change: Callable[[str], None] | None = None,
        task_quota: int = 10_000,
        idempotency_key_quota: int = 1_000,
    ) -> None:
        self.engine = engine
        self.task_quota = task_quota
        self.idempotency_key_quota = idempotency_key_quota
        self.on_change = on_change or (lambda _user_id: None)
        self.idempotency_key_seconds = idempotency_key_seconds
        self.in_transactions = in_transactions
        self.turns = Turns(engine)
        self.custom_plans = CustomPlans()

    async def close(self) -> None:
        """Gives the connections kept for the next request back to the engine's pool (before it is disposed)."""
        await self.turns.cool()

    async def _fetch(self, statement: Compiled, values: dict, *, planned_per_call: bool = False) -> list:
        """The statement's rows; `planned_per_call` for one whose best plan depends on its values
        (see `page`): never run with a generic plan (db/custom_plans.py)."""
        async with driver_connection(self.turns, in_transaction=self.in_transactions) as connection:
            if planned_per_call and not self.in_transactions:  # behind a pooler nothing stays prepared anyway
                return await self.custom_plans.fetch(connection, statement.sql, statement.arguments(values))
            return await connection.fetch(statement.sql, *statement.arguments(values))

    async def _one(self, statement: Compiled, values: dict) -> dict | None:
        rows = await self._fetch(statement, values)
        return task_of(rows[0]) if rows else None

    async def _missed(self, user_id: str, task_id: uuid.UUID, if_match: list[str] | None) -> NoReturn:
        """Why a write found no row: no such task (404), or another ETag than the caller's (412)."""
        current = None
        if if_match is not None:
            rows = await self._fetch(_etag(), {"user_id": user_id, "task_id": task_id})
            current = rows[0]["etag"] if rows else None
        if current is None:
            raise TaskNotFound()
        raise PreconditionFailed(current)

    async def create(self, user_id: str, fields: dict, *, idempotency_key: tuple[str, str] | None = None):
        """The new task; with an idempotency key (key, fingerprint of the request), the task
        the key first created and True if this is a replay."""
        values = {**fields, "user_id": user_id, "task_quota": self.task_quota}
        if idempotency_key is None:
            task = await self._one(_insert_compiled(frozenset(fields)), values)
            if task is None:
                raise QuotaExceeded("tasks", self.task_quota)
            self.on_change(user_id)
            return task, False
        key, fingerprint = idempotency_key
        async with self.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="READ COMMITTED")
            async with connection.begin():
                earlier = await idempotency.claim(
                    connection, user_id, key, fingerprint, self.idempotency_key_seconds, self.idempotency_key_quota
                )
                if earlier is not None:
                    return earlier, True
                row = (await connection.execute(_insert(frozenset(fields)), values)).one_or_none()
                if row is None:
                    raise QuotaExceeded("tasks", self.task_quota)  # the key's claim is rolled back too
                task = task_of(row)
                await idempotency.record(connection, user_id, key, fingerprint, task)
        self.on_change(user_id)
        return task, False

    async def get(self, user_id: str, task_id: uuid.UUID) -> dict:
        task = await self._one(_get(), {"user_id": user_id, "task_id": task_id})
        if task is None:
            raise TaskNotFound()
        return task

    async def update(self, user_id: str, task_id: uuid.UUID, fields: dict, *, if_match: list[str] | None = None):
        """Sets the given fields; the database keeps `updated_at`, `completed_at` and the ETag right."""
        statement = _update(frozenset(fields), if_match is not None)
        task = await self._one(statement, {**fields, "user_id": user_id, "task_id": task_id, "if_match": if_match})
        if task is None:
            await self._missed(user_id, task_id, if_match)
        self.on_change(user_id)
        return task

    async def delete(self, user_id: str, task_id: uuid.UUID, *, if_match: list[str] | None = None) -> None:
        values = {"user_id": user_id, "task_id": task_id, "if_match": if_match}
        if not await self._fetch(_delete(if_match is not None), values):
            await self._missed(user_id, task_id, if_match)
        self.on_change(user_id)

    async def page(
        self, user_id: str, where: ListFilter, *, sort: str, order: str, limit: int, cursor: str | None
    ) -> tuple[list[dict], str | None]:
        """One page in (sort key, id) order, and the cursor of the next page if there is one.

        A filtered page is planned for its own values on every call. PostgreSQL plans a prepared
        statement for its values five times, then may switch to one generic plan, made for no
        user in particular: there `user_id = $1` is the average user's handful of rows, so
        walking the sort index and filtering looks free, and for a big user it reads all their
        rows (a search that matches nothing on 50,000 tasks: 5 ms, then 26 s from the sixth
        call on a connection). An unfiltered page has one good plan for everyone."""
        after = Cursor.decode(cursor, sort=sort, order=order) if cursor is not None else None
        values = where.values(user_id)
        statement = list_query(where.status, sort, order, frozenset(values), after is not None)
        filtered = bool(values)
        values.update(user_id=user_id, limit=limit + 1, **(after.boundary() if after else {}))
        rows = await self._fetch(statement, values, planned_per_call=filtered)
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = Cursor(sort, order, _cursor_key(sort, last), str(last["id"])).encode()
        items = [task_of(row) for row in rows]
        return items, next_cursor
