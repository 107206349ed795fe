"""Two users side by side: neither can see, change, or learn of the other's tasks."""

import pytest


@pytest.fixture
def bobs_task(bob) -> dict:
    return bob.create_task(title="Bob's secret", tags=["private"])


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"title": "mine now"}),
        ("PATCH", "", {"title": "mine now"}),
        ("PATCH", "/complete", None),
        ("DELETE", "", None),
    ],
)
def test_alice_cannot_reach_bobs_task_through_her_own_path(alice, bob, bobs_task, method, suffix, body):
    response = alice.call(method, f"/{bobs_task['id']}{suffix}", json=body)
    assert response.status_code == 404, "someone else's task looks exactly like a missing one"
    assert response.json()["code"] == "TASK_NOT_FOUND"
    assert bob.call("GET", f"/{bobs_task['id']}").json() == bobs_task, "and it is left as it was"


def test_alice_cannot_reach_bobs_task_through_his_path(alice, bob, bobs_task):
    for method, suffix in [("GET", ""), ("DELETE", ""), ("PATCH", "/complete")]:
        assert alice.call(method, f"/{bobs_task['id']}{suffix}", owner=bob.id).status_code == 403
    assert bob.call("GET", f"/{bobs_task['id']}").json() == bobs_task


def test_lists_and_searches_show_only_your_own_tasks(alice, bob, bobs_task):
    mine = alice.create_task(title="Alice's", tags=["private"])
    assert alice.list_tasks()["items"] == [mine]
    assert alice.list_tasks(q="secret")["items"] == []
    assert alice.list_tasks(tag="private")["items"] == [mine]
    assert bob.list_tasks()["items"] == [bobs_task]
