"""The design this API started from, as most people would build it: FastAPI + SQLModel on the
async engine, a session per request through a dependency, Pydantic models in and out, a PyJWT
bearer dependency; the same routes, statements and bodies as the requests the benchmark sends.
Never served; `bench/run.py` starts it."""

import base64
import os
import uuid
from datetime import datetime
from typing import Annotated

import jwt
import orjson
import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    user_id: str = Field(primary_key=True)
    id: uuid.UUID = Field(primary_key=True, sa_column_kwargs={"server_default": sa.text("gen_random_uuid()")})
    title: str
    description: str | None = None
    completed: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    completed_at: datetime | None = None
    due_at: datetime | None = None
    priority: str = Field(default="medium", sa_type=sa.Enum("low", "medium", "high", name="task_priority"))
    tags: list[str] = Field(default_factory=list, sa_type=ARRAY(sa.Text))
    created_at: datetime | None = Field(default=None, sa_column_kwargs={"server_default": sa.func.now()})
    updated_at: datetime | None = Field(default=None, sa_column_kwargs={"server_default": sa.func.now()})
    revision: int | None = Field(default=None, sa_column_kwargs={"server_default": sa.text("0")})


class TaskRead(BaseModel):
    id: uuid.UUID
    user_id: str
    title: str
    description: str | None
    completed: bool
    completed_at: datetime | None
    due_at: datetime | None
    priority: str
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    etag: str


class TaskCreate(BaseModel):
    title: str
    description: str | None = None
    priority: str = "medium"
    tags: list[str] = []


class TaskPatch(BaseModel):
    title: str | None = None
    priority: str | None = None


class TaskCompletion(BaseModel):
    completed: bool = True


class TaskPage(BaseModel):
    items: list[TaskRead]
    next_cursor: str | None


url = os.environ["DATABASE_URL"]
size = int(os.environ.get("DB_POOL_SIZE", "10"))
engine = create_async_engine(url, pool_size=size, max_overflow=0)
app = FastAPI()
bearer = HTTPBearer()


async def session():
    async with AsyncSession(engine, expire_on_commit=False) as db:
        yield db


def caller(user_id: str, credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> str:
    try:
        secret = os.environ["BETTER_AUTH_SECRET"]
        claims = jwt.decode(credentials.credentials, secret, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.PyJWTError:
        raise HTTPException(401) from None
    if claims.get("sub") != user_id:
        raise HTTPException(403)
    return user_id


User = Annotated[str, Depends(caller)]
Session = Annotated[AsyncSession, Depends(session)]


def read(task: Task) -> TaskRead:
    return TaskRead(**task.model_dump(), etag=f'"{task.revision}"')


async def owned(db: AsyncSession, user_id: str, task_id: uuid.UUID) -> Task:
    task = await db.get(Task, (user_id, task_id))
    if task is None:
        raise HTTPException(404)
    return task


@app.get("/api/{user_id}/tasks", response_model=TaskPage)
async def list_tasks(
    user_id: User,
    db: Session,
    status: str = "all",
    sort: str = "created",
    order: str = "desc",
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    priority: str | None = None,
    tag: str | None = None,
    cursor: str | None = None,
):
    key = col(Task.created_at) if sort == "created" else sa.func.coalesce(Task.due_at, sa.text("'infinity'"))
    statement = select(Task).where(Task.user_id == user_id)
    if status != "all":
        statement = statement.where(Task.completed == (status == "completed"))
    if priority is not None:
        statement = statement.where(Task.priority == priority)
    if tag is not None:
        statement = statement.where(col(Task.tags).contains([tag]))
    if cursor is not None:
        last_key, last_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=="))
        bound = datetime.fromisoformat(last_key) if last_key else None
        if sort == "due_date":
            bound = sa.func.coalesce(sa.cast(bound, sa.DateTime(timezone=True)), sa.text("'infinity'"))
        position = sa.tuple_(key, Task.id)
        boundary = sa.tuple_(bound, uuid.UUID(last_id))
        statement = statement.where(position < boundary if order == "desc" else position > boundary)
    direction = sa.desc if order == "desc" else sa.asc
    statement = statement.order_by(direction(key), direction(Task.id)).limit(limit + 1)
    rows = list((await db.exec(statement)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last_key = rows[-1].created_at if sort == "created" else rows[-1].due_at
        last = [last_key and last_key.isoformat(), str(rows[-1].id)]
        next_cursor = base64.urlsafe_b64encode(orjson.dumps(last)).decode().rstrip("=")
    return TaskPage(items=[read(task) for task in rows], next_cursor=next_cursor)


@app.post("/api/{user_id}/tasks", response_model=TaskRead, status_code=201)
async def create_task(user_id: User, db: Session, body: TaskCreate, response: Response):
    task = Task(user_id=user_id, **body.model_dump())
    db.add(task)
    await db.commit()
    await db.refresh(task)
    response.headers["ETag"] = f'"{task.revision}"'
    response.headers["Location"] = f"/api/{user_id}/tasks/{task.id}"
    return read(task)


@app.get("/api/{user_id}/tasks/{task_id}", response_model=TaskRead)
async def get_task(user_id: User, db: Session, task_id: uuid.UUID, response: Response):
    task = read(await owned(db, user_id, task_id))
    response.headers["ETag"] = task.etag
    return task


@app.patch("/api/{user_id}/tasks/{task_id}", response_model=TaskRead)
async def update_task(user_id: User, db: Session, task_id: uuid.UUID, body: TaskPatch, response: Response):
    task = await owned(db, user_id, task_id)
    for name, value in body.model_dump(exclude_unset=True).items():
        setattr(task, name, value)
    await db.commit()
    await db.refresh(task)
    response.headers["ETag"] = f'"{task.revision}"'
    return read(task)


@app.patch("/api/{user_id}/tasks/{task_id}/complete", response_model=TaskRead)
async def complete_task(user_id: User, db: Session, task_id: uuid.UUID, body: TaskCompletion, response: Response):
    task = await owned(db, user_id, task_id)
    task.completed = body.completed
    await db.commit()
    await db.refresh(task)
    response.headers["ETag"] = f'"{task.revision}"'
    return read(task)


@app.delete("/api/{user_id}/tasks/{task_id}", status_code=204)
async def delete_task(user_id: User, db: Session, task_id: uuid.UUID):
    await db.delete(await owned(db, user_id, task_id))
    await db.commit()
    return Response(status_code=204)
