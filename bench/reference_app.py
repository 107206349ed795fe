"""The reference the benchmark compares against: the same list endpoint written by hand on
plain Starlette and asyncpg (JWT check, owner check, one query, JSON), with no contract,
no validation and no ORM. It shows what the framework and the safety cost."""

import json
import os
from contextlib import asynccontextmanager

import asyncpg
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from db.engine import asyncpg_url

LIST_SQL = """
SELECT id, user_id, title, description, completed, completed_at, due_at, priority, tags, created_at, updated_at
FROM tasks WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2
"""


@asynccontextmanager
async def lifespan(app):
    dsn = asyncpg_url(os.environ["DATABASE_URL"]).replace("postgresql+asyncpg", "postgresql")
    app.state.pool = await asyncpg.create_pool(dsn, min_size=5, max_size=15)
    yield
    await app.state.pool.close()


async def list_tasks(request: Request) -> Response:
    try:
        _, token = request.headers["authorization"].split(" ", 1)
        claims = jwt.decode(token, os.environ["BETTER_AUTH_SECRET"], algorithms=["HS256"], options={"require": ["exp"]})
    except (KeyError, ValueError, jwt.PyJWTError):
        return JSONResponse({"detail": "unauthorized"}, status_code=401)
    if claims.get("sub") != request.path_params["user_id"]:
        return JSONResponse({"detail": "forbidden"}, status_code=403)
    rows = await request.app.state.pool.fetch(LIST_SQL, claims["sub"], 51)
    items = [dict(row) for row in rows[:50]]
    body = json.dumps({"items": items, "next_cursor": None}, default=str)
    return Response(body, media_type="application/json")


app = Starlette(routes=[Route("/api/{user_id}/tasks", list_tasks)], lifespan=lifespan)
