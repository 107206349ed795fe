"""The task life cycle, one operation at a time, as a user sees it."""

import uuid
from datetime import datetime

import pytest

# Named by the file, not drawn at random: every pytest-xdist worker collects the same test ids.
MISSING = str(uuid.uuid5(uuid.NAMESPACE_URL, "tests/test_tasks.py"))


def test_creating_a_task_fills_in_the_defaults_and_says_where_it_lives(alice):
    response = alice.call("POST", json={"title": "Buy milk"})
    assert response.status_code == 201
    task = response.json()
    assert response.headers["Location"] == f"/api/{alice.id}/tasks/{task['id']}"
    assert uuid.UUID(task["id"])
    assert task["user_id"] == alice.id
    assert task["title"] == "Buy milk"
    assert (task["description"], task["completed"], task["completed_at"], task["due_at"]) == (None, False, None, None)
    assert (task["priority"], task["tags"]) == ("medium", [])
    assert task["created_at"] == task["updated_at"]


def test_creating_a_task_with_every_field(alice):
    task = alice.create_task(
        title="File the tax return",
        description="Receipts in the blue folder",
        due_at="2026-12-15T17:00:00+01:00",
        priority="high",
        tags=["admin", "home"],
    )
    assert task["description"] == "Receipts in the blue folder"
    assert datetime.fromisoformat(task["due_at"]) == datetime.fromisoformat("2026-12-15T16:00:00Z")
    assert (task["priority"], task["tags"]) == ("high", ["admin", "home"])


def test_a_task_created_completed_has_a_completion_time(alice):
    task = alice.create_task(completed=True)
    assert task["completed"] is True
    assert task["completed_at"] is not None


def test_getting_a_task(alice):
    task = alice.create_task(title="Read")
    response = alice.call("GET", f"/{task['id']}")
    assert response.status_code == 200
    assert response.json() == task


def test_replacing_a_task_resets_what_is_left_out(alice):
    task = alice.create_task(
        title="Old", description="details", priority="high", tags=["x"], due_at="2027-01-01T00:00:00Z"
    )
    response = alice.call("PUT", f"/{task['id']}", json={"title": "New"})
    assert response.status_code == 200
    replaced = response.json()
    assert replaced["id"] == task["id"]
    assert replaced["title"] == "New"
    assert (replaced["description"], replaced["priority"], replaced["tags"], replaced["due_at"]) == (
        None,
        "medium",
        [],
        None,
    )
    assert replaced["created_at"] == task["created_at"]
    assert replaced["updated_at"] > task["updated_at"]


def test_updating_a_task_changes_only_what_is_sent_and_null_clears(alice):
    task = alice.create_task(title="Keep", description="clear me", due_at="2027-01-01T00:00:00Z", tags=["t"])
    response = alice.call("PATCH", f"/{task['id']}", json={"priority": "low", "description": None, "due_at": None})
    assert response.status_code == 200
    updated = response.json()
    assert (updated["title"], updated["tags"]) == ("Keep", ["t"])
    assert (updated["priority"], updated["description"], updated["due_at"]) == ("low", None, None)


def test_an_update_that_changes_nothing_leaves_updated_at(alice):
    task = alice.create_task(title="Same")
    assert alice.call("PATCH", f"/{task['id']}", json={}).json() == task
    assert alice.call("PATCH", f"/{task['id']}", json={"title": "Same"}).json() == task


def test_completing_a_task_is_idempotent(alice):
    task = alice.create_task()
    first = alice.call("PATCH", f"/{task['id']}/complete")
    assert first.status_code == 200
    completed = first.json()
    assert completed["completed"] is True
    assert completed["completed_at"] is not None
    again = alice.call("PATCH", f"/{task['id']}/complete", json={"completed": True}).json()
    assert again == completed, "repeating the call changes nothing, not even updated_at"


def test_reopening_a_task_clears_its_completion_time(alice):
    task = alice.create_task(completed=True)
    reopened = alice.call("PATCH", f"/{task['id']}/complete", json={"completed": False}).json()
    assert (reopened["completed"], reopened["completed_at"]) == (False, None)
    assert alice.call("PATCH", f"/{task['id']}/complete", json={"completed": False}).json() == reopened


def test_completing_through_an_update_also_sets_the_completion_time(alice):
    task = alice.create_task()
    updated = alice.call("PATCH", f"/{task['id']}", json={"completed": True}).json()
    assert updated["completed_at"] is not None


def test_deleting_a_task(alice):
    task = alice.create_task()
    response = alice.call("DELETE", f"/{task['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert alice.call("GET", f"/{task['id']}").status_code == 404
    assert alice.call("DELETE", f"/{task['id']}").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/{MISSING}", None),
        ("PUT", f"/{MISSING}", {"title": "x"}),
        ("PATCH", f"/{MISSING}", {"title": "x"}),
        ("DELETE", f"/{MISSING}", None),
        ("PATCH", f"/{MISSING}/complete", None),
    ],
)
def test_a_task_that_does_not_exist_is_404_on_every_operation(alice, method, path, body):
    response = alice.call(method, path, json=body)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "TASK_NOT_FOUND"


def test_a_task_id_that_is_not_a_uuid_is_400(alice):
    response = alice.call("GET", "/not-a-uuid")
    assert response.status_code == 400
    assert response.json()["errors"] == [{"in": "path", "name": "task_id", "message": "'not-a-uuid' is not a 'uuid'"}]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_a_body_that_is_not_json_is_415(alice, content_type):
    response = alice.call("POST", content=b'{"title": "x"}', headers={"Content-Type": content_type})
    assert response.status_code == 415
    assert response.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert alice.list_tasks()["items"] == []
