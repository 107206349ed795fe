"""The floor the benchmark measures the API against: the same operations written by hand on
Starlette, an asyncpg pool, PyJWT and orjson, with nothing else. Each does the API's work for
the requests the benchmark sends: the bearer token checked against the path, the same columns
and statements on the same migrated tables (the database's triggers keep ETags as for the API),
limit + 1 rows and the next cursor, the same bodies and ETag headers. No contract, no validation
beyond what the statement needs, no error documents: what a request costs at the least.
Never served; `bench/run.py` starts it."""

import base64
import os
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
import jwt
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

COLUMNS = (
    "id, user_id, title, description, completed, completed_at, due_at, priority, tags, created_at, "
    "updated_at, '\"' || revision::text || '\"' AS etag"  # IMMUTABLE, as Citus asks (not format())
)
SORT_KEYS = {"created": "created_at", "due_date": "coalesce(due_at, 'infinity'::timestamptz)"}
OWNED = "user_id = $1 AND id = $2"


@asynccontextmanager
async def lifespan(app):
    dsn = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    size = int(os.environ.get("DB_POOL_SIZE", "10"))
    app.state.pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size)
    app.state.secret = os.environ["BETTER_AUTH_SECRET"]
    yield
    await app.state.pool.close()


def json(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body, default=str), status, headers, media_type="application/json")  # asyncpg UUIDs


def caller(request: Request) -> str | None:
    """The user the bearer token names, if it names the path's user."""
    try:
        scheme, token = request.headers["authorization"].split(" ", 1)
        claims = jwt.decode(token, request.app.state.secret, algorithms=["HS256"], options={"require": ["exp"]})
    except (KeyError, ValueError, jwt.PyJWTError):
        return None
    user_id = request.path_params["user_id"]
    return user_id if scheme.lower() == "bearer" and claims.get("sub") == user_id else None


def task_json(row) -> dict:
    return dict(row.items())


async def list_tasks(request: Request) -> Response:
    user_id = caller(request)
    if user_id is None:
        return json({"detail": "unauthorized"}, 401)
    query = request.query_params
    sort, order = query.get("sort", "created"), query.get("order", "desc")
    limit = int(query.get("limit", "50"))
    key = SORT_KEYS[sort]
    where, args = ["user_id = $1"], [user_id]
    if query.get("status", "all") != "all":
        where.append(f"completed = {'true' if query['status'] == 'completed' else 'false'}")
    if "priority" in query:
        args.append(query["priority"])
        where.append(f"priority = ${len(args)}::task_priority")
    if "tag" in query:
        args.append([f"{user_id}\x1f{query['tag']}"])  # the API's (user, tag) keys: migrations/0009
        where.append(f"user_tag_keys(user_id, tags) @> ${len(args)}::text[]")
    if "cursor" in query:
        last_key, last_id = orjson.loads(base64.urlsafe_b64decode(query["cursor"] + "=="))
        args += [last_key and datetime.fromisoformat(last_key), last_id]
        bound = f"coalesce(${len(args) - 1}::timestamptz, 'infinity')" if sort == "due_date" else f"${len(args) - 1}"
        where.append(f"({key}, id) {'<' if order == 'desc' else '>'} ({bound}::timestamptz, ${len(args)}::uuid)")
    args.append(limit + 1)
    sql = (
        f"SELECT {COLUMNS} FROM tasks WHERE {' AND '.join(where)} ORDER BY {key} {order}, id {order} LIMIT ${len(args)}"
    )
    rows = await request.app.state.pool.fetch(sql, *args)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last_key = rows[-1]["created_at" if sort == "created" else "due_at"]
        last = [last_key and last_key.isoformat(), str(rows[-1]["id"])]
        next_cursor = base64.urlsafe_b64encode(orjson.dumps(last)).decode().rstrip("=")
    items = [task_json(row) for row in rows]
    return json({"items": items, "next_cursor": next_cursor})


def one(row) -> Response:
    if row is None:
        return json({"detail": "not found"}, 404)
    task = task_json(row)
    return json(task, headers={"ETag": task["etag"]})


async def get_task(request: Request) -> Response:
    if (user_id := caller(request)) is None:
        return json({"detail": "unauthorized"}, 401)
    sql = f"SELECT {COLUMNS} FROM tasks WHERE {OWNED}"
    return one(await request.app.state.pool.fetchrow(sql, user_id, request.path_params["task_id"]))


async def create_task(request: Request) -> Response:
    if (user_id := caller(request)) is None:
        return json({"detail": "unauthorized"}, 401)
    body = orjson.loads(await request.body())
    sql = (
        f"INSERT INTO tasks (user_id, title, description, priority, tags) "
        f"VALUES ($1, $2, $3, $4::task_priority, $5::text[]) RETURNING {COLUMNS}"
    )
    values = (body["title"], body.get("description"), body.get("priority", "medium"), body.get("tags", []))
    task = task_json(await request.app.state.pool.fetchrow(sql, user_id, *values))
    headers = {"ETag": task["etag"], "Location": f"/api/{user_id}/tasks/{task['id']}"}
    return json(task, 201, headers)


async def update_task(request: Request) -> Response:
    if (user_id := caller(request)) is None:
        return json({"detail": "unauthorized"}, 401)
    body = orjson.loads(await request.body())
    sql = f"UPDATE tasks SET title = $3, priority = $4::task_priority WHERE {OWNED} RETURNING {COLUMNS}"
    values = (body["title"], body["priority"])
    return one(await request.app.state.pool.fetchrow(sql, user_id, request.path_params["task_id"], *values))


async def complete_task(request: Request) -> Response:
    if (user_id := caller(request)) is None:
        return json({"detail": "unauthorized"}, 401)
    body = orjson.loads(await request.body() or b"{}")
    sql = f"UPDATE tasks SET completed = $3 WHERE {OWNED} RETURNING {COLUMNS}"
    completed = body.get("completed", True)
    return one(await request.app.state.pool.fetchrow(sql, user_id, request.path_params["task_id"], completed))


async def delete_task(request: Request) -> Response:
    if (user_id := caller(request)) is None:
        return json({"detail": "unauthorized"}, 401)
    sql = f"DELETE FROM tasks WHERE {OWNED} RETURNING id"
    if await request.app.state.pool.fetchval(sql, user_id, request.path_params["task_id"]) is None:
        return json({"detail": "not found"}, 404)
    return Response(status_code=204)


app = Starlette(
    routes=[
        Route("/api/{user_id}/tasks", list_tasks, methods=["GET"]),
        Route("/api/{user_id}/tasks", create_task, methods=["POST"]),
        Route("/api/{user_id}/tasks/{task_id}", get_task, methods=["GET"]),
        Route("/api/{user_id}/tasks/{task_id}", update_task, methods=["PATCH"]),
        Route("/api/{user_id}/tasks/{task_id}", delete_task, methods=["DELETE"]),
        Route("/api/{user_id}/tasks/{task_id}/complete", complete_task, methods=["PATCH"]),
    ],
    lifespan=lifespan,
)
