"""listTasks: every filter, every sort, and pages that hold together while the list changes."""

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from db.tasks import SORT_KEYS

PRIORITY_RANK = {"low": 0, "medium": 1, "high": 2}


def titles(page: dict) -> list[str]:
    return [task["title"] for task in page["items"]]


def every_page(user, cursor: str | None = None, **params) -> list[dict]:
    """Follows next_cursor to the end; returns the tasks in the order they came."""
    seen = []
    while True:
        page = user.list_tasks(**params, **({"cursor": cursor} if cursor else {}))
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_an_empty_list(alice):
    assert alice.list_tasks() == {"items": [], "next_cursor": None}


def test_newest_first_by_default(alice):
    for title in ["first", "second", "third"]:
        alice.create_task(title=title)
    assert titles(alice.list_tasks()) == ["third", "second", "first"]


def test_status_filter(alice):
    alice.create_task(title="open")
    alice.create_task(title="done", completed=True)
    assert titles(alice.list_tasks(status="pending")) == ["open"]
    assert titles(alice.list_tasks(status="completed")) == ["done"]
    assert sorted(titles(alice.list_tasks(status="all"))) == ["done", "open"]


def test_search_ignores_case_and_covers_the_description(alice):
    alice.create_task(title="Buy MILK")
    alice.create_task(title="Shop", description="oat milk and bread")
    alice.create_task(title="Unrelated")
    assert sorted(titles(alice.list_tasks(q="milk"))) == ["Buy MILK", "Shop"]


@pytest.mark.parametrize(("q", "expected"), [("100%", ["100% done"]), ("a_b", ["a_b"]), ("\\", ["back\\slash"])])
def test_search_takes_every_character_literally(alice, q, expected):
    for title in ["100% done", "1000 done", "a_b", "axb", "back\\slash"]:
        alice.create_task(title=title)
    assert titles(alice.list_tasks(q=q)) == expected


def test_priority_and_tag_filters(alice):
    alice.create_task(title="urgent work", priority="high", tags=["work"])
    alice.create_task(title="slow work", priority="low", tags=["work", "later"])
    alice.create_task(title="urgent home", priority="high", tags=["home"])
    assert sorted(titles(alice.list_tasks(priority="high"))) == ["urgent home", "urgent work"]
    assert sorted(titles(alice.list_tasks(tag="work"))) == ["slow work", "urgent work"]
    assert titles(alice.list_tasks(tag="work", priority="high")) == ["urgent work"]


def test_due_window_is_half_open(alice):
    alice.create_task(title="nov", due_at="2026-11-15T00:00:00Z")
    alice.create_task(title="dec-1", due_at="2026-12-01T00:00:00Z")
    alice.create_task(title="undated")
    window = {"due_after": "2026-11-15T00:00:00Z", "due_before": "2026-12-01T00:00:00Z"}
    assert titles(alice.list_tasks(**window)) == ["nov"]
    assert titles(alice.list_tasks(due_after="2026-12-01T01:00:00+01:00")) == ["dec-1"]


def test_filters_combine(alice):
    alice.create_task(title="Pay rent", priority="high", tags=["home"], due_at="2026-12-01T00:00:00Z")
    alice.create_task(title="Pay rent late", priority="high", tags=["home"], completed=True)
    alice.create_task(title="Pay bills", priority="low", tags=["home"], due_at="2026-12-01T00:00:00Z")
    params = {"status": "pending", "q": "pay", "priority": "high", "tag": "home", "due_before": "2027-01-01T00:00:00Z"}
    assert titles(alice.list_tasks(**params)) == ["Pay rent"]


def make_mixed_tasks(user) -> list[dict]:
    """Tasks with ties on every sort key, mixed case titles and missing due dates."""
    specs = [
        ("banana", "high", "2026-12-02T00:00:00Z"),
        ("Apple", "low", None),
        ("apple", "medium", "2026-12-01T00:00:00Z"),
        ("cherry", "high", "2026-12-01T00:00:00Z"),
        ("Banana", "medium", None),
        ("date", "low", "2026-12-03T00:00:00Z"),
        ("apple", "high", None),
    ]
    return [user.create_task(title=t, priority=p, due_at=d) for t, p, d in specs]


def expected_order(tasks: list[dict], sort: str, order: str) -> list[str]:
    """The order the contract promises, computed independently of the service."""
    far_future = datetime.max.replace(tzinfo=UTC)
    keys = {
        "created": lambda t: datetime.fromisoformat(t["created_at"]),
        "updated": lambda t: datetime.fromisoformat(t["updated_at"]),
        "title": lambda t: t["title"].lower(),
        "due_date": lambda t: datetime.fromisoformat(t["due_at"]) if t["due_at"] else far_future,
        "priority": lambda t: PRIORITY_RANK[t["priority"]],
    }
    ordered = sorted(tasks, key=lambda t: (keys[sort](t), t["id"]), reverse=order == "desc")
    return [t["id"] for t in ordered]


@pytest.mark.parametrize("sort", list(SORT_KEYS))
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 2, 3, 50])
def test_every_sort_pages_through_every_task_once_in_order(alice, sort, order, limit):
    tasks = make_mixed_tasks(alice)
    seen = every_page(alice, sort=sort, order=order, limit=limit)
    assert [t["id"] for t in seen] == expected_order(tasks, sort, order)


def test_pages_stay_correct_while_tasks_are_created_and_deleted(alice):
    tasks = [alice.create_task(title=f"task {n:02}") for n in range(10)]
    first = alice.list_tasks(sort="title", order="asc", limit=4)
    assert titles(first) == [f"task {n:02}" for n in range(4)]
    alice.create_task(title="task 00 again")  # sorts into the page already seen
    alice.create_task(title="task 99")  # sorts after everything
    alice.call("DELETE", f"/{tasks[5]['id']}")  # on the next page
    alice.call("DELETE", f"/{tasks[1]['id']}")  # on the page already seen
    rest = every_page(alice, sort="title", order="asc", limit=4, cursor=first["next_cursor"])
    assert [t["title"] for t in rest] == ["task 04", "task 06", "task 07", "task 08", "task 09", "task 99"]


def test_the_longest_titles_still_make_cursors_the_contract_accepts(alice):
    for mark in "ab":
        alice.create_task(title=mark + "\U0001f600" * 499)  # 500 characters, 4 bytes each in UTF-8
    assert len(every_page(alice, sort="title", order="asc", limit=1)) == 2


def test_a_thousand_tasks_page_by_the_default_size(alice):
    for n in range(0, 1000, 100):
        alice.call("GET")  # interleave reads with the writes, as a live user would
        for m in range(n, n + 100):
            alice.create_task(title=f"t{m}")
    first = alice.list_tasks()
    assert len(first["items"]) == 50
    assert len(every_page(alice, limit=200)) == 1000


def forged(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        ("created", "garbage"),
        ("created", forged({"not": "a list"})),
        ("created", forged(["created", "desc", "not a date", "00000000-0000-0000-0000-000000000000"])),
        ("created", forged(["created", "desc", "9999-12-31T23:59:59-05:00", "00000000-0000-0000-0000-000000000000"])),
        ("priority", forged(["priority", "desc", "urgent", "00000000-0000-0000-0000-000000000000"])),
        ("title", forged(["title", "desc", "nul\u0000", "00000000-0000-0000-0000-000000000000"])),
        ("title", forged(["title", "desc", "\ud800", "00000000-0000-0000-0000-000000000000"])),
        ("title", forged(["title", "desc", None, "00000000-0000-0000-0000-000000000000"])),
        ("title", forged(["title", "desc", "x", "not-a-uuid"])),
    ],
)
def test_a_cursor_the_service_did_not_make_is_400(alice, sort, cursor):
    response = alice.call("GET", params={"cursor": cursor, "sort": sort})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_CURSOR"


def test_a_cursor_is_only_good_for_the_sort_it_came_from(alice):
    for n in range(3):
        alice.create_task(title=str(n))
    cursor = alice.list_tasks(limit=1, sort="title")["next_cursor"]
    response = alice.call("GET", params={"cursor": cursor, "sort": "created"})
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_CURSOR"


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "done"}, "status"),
        ({"sort": "random"}, "sort"),
        ({"order": "up"}, "order"),
        ({"priority": "urgent"}, "priority"),
        ({"due_before": "tomorrow"}, "due_before"),
        ({"due_after": "2026-13-01T00:00:00Z"}, "due_after"),
        ({"q": ""}, "q"),
        ({"tag": "x" * 51}, "tag"),
        ({"page": 2}, "page"),
    ],
)
def test_bad_list_parameters_are_400_naming_the_parameter(alice, params, name):
    response = alice.call("GET", params=params)
    assert response.status_code == 400
    assert [error["name"] for error in response.json()["errors"]] == [name]


def test_every_bad_parameter_is_reported_at_once(alice):
    response = alice.call("GET", params={"limit": 0, "sort": "random", "order": "up"})
    assert sorted(error["name"] for error in response.json()["errors"]) == ["limit", "order", "sort"]


def test_due_filter_accepts_any_offset(alice):
    alice.create_task(title="due", due_at=(datetime(2026, 12, 1, tzinfo=UTC)).isoformat())
    before = (datetime(2026, 12, 1, 1, tzinfo=timezone(timedelta(hours=1))) + timedelta(seconds=1)).isoformat()
    assert titles(alice.list_tasks(due_before=before)) == ["due"]
