"""A whole task life cycle through the generated Python client, against the live service."""

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import tasks_api_client.models as models
import yaml
from tasks_api_client import AuthenticatedClient
from tasks_api_client.api.tasks import (
    complete_task,
    create_task,
    delete_task,
    get_task,
    list_changes,
    list_tasks,
    replace_task,
    update_task,
)
from tasks_api_client.models import (
    Priority,
    Problem,
    StatusFilter,
    Task,
    TaskChanges,
    TaskCompletion,
    TaskInput,
    TaskPage,
    TaskPatch,
)

from cli import PROJECT


def test_a_task_life_cycle_through_the_generated_client(service, mint, user_id):
    client = AuthenticatedClient(base_url=service.base_url, token=mint(user_id), raise_on_unexpected_status=True)

    created = create_task.sync_detailed(
        user_id, client=client, body=TaskInput(title="File the tax return", priority=Priority.HIGH, tags=["home"])
    )
    assert created.status_code == 201
    task = created.parsed
    assert isinstance(task, Task)
    assert created.headers["Location"] == f"/api/{user_id}/tasks/{task.id}"
    for n in range(3):
        create_task.sync(user_id, client=client, body=TaskInput(title=f"errand {n}", tags=["errands"]))

    first = list_tasks.sync(user_id, client=client, tag="errands", limit=2, status=StatusFilter.PENDING)
    assert isinstance(first, TaskPage)
    assert len(first.items) == 2
    second = list_tasks.sync(user_id, client=client, tag="errands", limit=2, cursor=first.next_cursor)
    assert [t.title for t in second.items] == ["errand 0"]
    assert second.next_cursor is None

    assert get_task.sync(user_id, task.id, client=client) == task

    due = datetime(2026, 12, 15, 17, tzinfo=UTC)
    replaced = replace_task.sync(user_id, task.id, client=client, body=TaskInput(title="Taxes", due_at=due))
    assert (replaced.title, replaced.due_at, replaced.priority, replaced.tags) == ("Taxes", due, Priority.MEDIUM, [])

    updated = update_task.sync(user_id, task.id, client=client, body=TaskPatch(due_at=None, priority=Priority.LOW))
    assert (updated.due_at, updated.priority, updated.title) == (None, Priority.LOW, "Taxes")

    completed = complete_task.sync(user_id, task.id, client=client)
    assert completed.completed and completed.completed_at is not None
    reopened = complete_task.sync(user_id, task.id, client=client, body=TaskCompletion(completed=False))
    assert (reopened.completed, reopened.completed_at) == (False, None)

    assert delete_task.sync_detailed(user_id, task.id, client=client).status_code == 204
    assert get_task.sync_detailed(user_id, task.id, client=client).status_code == 404


def test_retries_two_tabs_and_a_sync_round_trip_through_the_generated_client(service, mint, user_id):
    client = AuthenticatedClient(base_url=service.base_url, token=mint(user_id))
    key = str(uuid.uuid4())
    first = create_task.sync_detailed(user_id, client=client, body=TaskInput(title="Buy milk"), idempotency_key=key)
    retried = create_task.sync_detailed(user_id, client=client, body=TaskInput(title="Buy milk"), idempotency_key=key)
    assert retried.parsed == first.parsed and retried.headers["Idempotent-Replayed"] == "true"
    task = first.parsed

    full = list_changes.sync(user_id, client=client)
    assert isinstance(full, TaskChanges) and [t.id for t in full.changes] == [task.id]

    tab_one = update_task.sync(user_id, task.id, client=client, body=TaskPatch(title="Oat milk"), if_match=task.etag)
    tab_two = update_task.sync(user_id, task.id, client=client, body=TaskPatch(title="Soy milk"), if_match=task.etag)
    assert tab_one.title == "Oat milk"
    assert isinstance(tab_two, Problem) and tab_two.code == "PRECONDITION_FAILED"
    assert tab_two.current_etag == tab_one.etag

    delete_task.sync_detailed(user_id, task.id, client=client, if_match=tab_one.etag)
    caught_up = list_changes.sync(user_id, client=client, since=full.next_since)
    assert ([t.title for t in caught_up.changes], caught_up.deleted, caught_up.has_more) == ([], [task.id], False)


def test_errors_arrive_as_typed_problems(service, mint, user_id):
    client = AuthenticatedClient(base_url=service.base_url, token=mint(user_id))

    invalid = create_task.sync(user_id, client=client, body=TaskInput(title="   "))
    assert isinstance(invalid, Problem)
    assert (invalid.status, invalid.code) == (400, "VALIDATION_FAILED")
    assert [v.pointer for v in invalid.errors] == ["/title"]

    stranger = AuthenticatedClient(base_url=service.base_url, token="not-a-jwt")
    unauthenticated = list_tasks.sync_detailed(user_id, client=stranger)
    assert unauthenticated.status_code == 401
    assert isinstance(unauthenticated.parsed, Problem)
    assert unauthenticated.headers["WWW-Authenticate"].startswith("Bearer")

    someone_else = AuthenticatedClient(base_url=service.base_url, token=mint("someone-else"))
    forbidden = list_tasks.sync(user_id, client=someone_else)
    assert isinstance(forbidden, Problem) and forbidden.code == "FORBIDDEN"

    missing = get_task.sync(user_id, uuid.uuid4(), client=client)
    assert isinstance(missing, Problem) and missing.code == "TASK_NOT_FOUND"


def test_the_generated_names_are_the_contracts_names():
    """Every model is a named component of the contract: nothing invented like Body1 or *Response200."""
    components = yaml.safe_load((PROJECT / "openapi" / "tasks.yaml").read_text())["components"]["schemas"]
    enums_and_objects = {name for name, schema in components.items() if "enum" in schema or "properties" in schema}
    assert set(models.__all__) == enums_and_objects
    assert not [name for name in models.__all__ if re.search(r"Body\d|Response\d{3}|Item$", name)]


def test_the_generated_client_leaves_the_event_stream_out():
    """It would parse a whole stream as one event; Python reads the stream with httpx (README)."""
    import tasks_api_client.api.tasks as operations

    assert not (Path(operations.__file__).parent / "stream_changes.py").exists()
    assert (Path(operations.__file__).parent / "list_changes.py").exists()
