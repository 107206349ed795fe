"""listTasks, createTask, getTask, replaceTask, updateTask, deleteTask, completeTask."""

import hashlib
import uuid
from datetime import UTC, datetime

import orjson
from connexion import NoContent
from connexion.context import operation

from db.tasks import ListFilter
from handlers import task_store
from service.conditional import if_match_tags, none_match
from service.contract import request
from service.errors import InvalidRequest, PreconditionRequired


def _declared_defaults() -> dict:
    """The defaults the contract declares for this operation's body fields."""
    properties = operation.body_schema("application/json").get("properties", {})
    return {name: schema["default"] for name, schema in properties.items() if "default" in schema}


def _instant(value: str, *, where: str, name: str) -> datetime:
    """An RFC 3339 string the contract has accepted, as an aware UTC datetime."""
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):
        location = {"in": where, "pointer": f"/{name}"} if where == "body" else {"in": where, "name": name}
        raise InvalidRequest(
            [{**location, "message": f"{value!r} is not a date-time this service can store"}]
        ) from None


def _columns(body: dict) -> dict:
    """A validated body as column values."""
    fields = dict(body)
    if fields.get("due_at") is not None:
        fields["due_at"] = _instant(fields["due_at"], where="body", name="due_at")
    return fields


def _if_match() -> list[str] | None:
    """The ETags a change is conditional on; None when it is not (or on `*`)."""
    header = request.headers.get("If-Match")
    if header is None:
        if request.state.require_if_match:
            raise PreconditionRequired()
        return None
    return if_match_tags(header)


def _with_etag(task: dict, status: int = 200, headers: dict | None = None):
    return task, status, {"ETag": task["etag"], **(headers or {})}


async def list_tasks(
    user_id: str,
    status: str,
    sort: str,
    order: str,
    limit: int,
    q: str | None = None,
    priority: str | None = None,
    tag: str | None = None,
    due_before: str | None = None,
    due_after: str | None = None,
    cursor: str | None = None,
):
    where = ListFilter(
        status=status,
        q=q,
        priority=priority,
        tag=tag,
        due_before=due_before and _instant(due_before, where="query", name="due_before"),
        due_after=due_after and _instant(due_after, where="query", name="due_after"),
    )
    items, next_cursor = await task_store().page(user_id, where, sort=sort, order=order, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


async def create_task(user_id: str, body: dict):
    key = request.headers.get("Idempotency-Key")
    if key is not None:  # the same request is the same body, whatever the order of its fields
        key = (key, hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest())
    task, replayed = await task_store().create(user_id, _columns(body), idempotency_key=key)
    headers = {"Location": f"/api/{user_id}/tasks/{task['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return _with_etag(task, 201, headers)


async def get_task(user_id: str, task_id: uuid.UUID):
    task = await task_store().get(user_id, task_id)
    if none_match(request.headers.get("If-None-Match"), task["etag"]):
        return NoContent, 304, {"ETag": task["etag"]}
    return _with_etag(task)


async def replace_task(user_id: str, task_id: uuid.UUID, body: dict):
    fields = _columns({**_declared_defaults(), **body})
    return _with_etag(await task_store().update(user_id, task_id, fields, if_match=_if_match()))


async def update_task(user_id: str, task_id: uuid.UUID, body: dict):
    return _with_etag(await task_store().update(user_id, task_id, _columns(body), if_match=_if_match()))


async def delete_task(user_id: str, task_id: uuid.UUID):
    await task_store().delete(user_id, task_id, if_match=_if_match())
    return NoContent, 204


async def complete_task(user_id: str, task_id: uuid.UUID, body: dict | None = None):
    completed = (body or {}).get("completed", True)
    return _with_etag(await task_store().update(user_id, task_id, {"completed": completed}, if_match=_if_match()))
