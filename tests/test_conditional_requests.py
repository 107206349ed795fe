"""Two tabs editing one task: ETags that follow every change, 304 for a copy still fresh, and
If-Match so that a write based on a stale copy is refused (412) instead of overwriting."""

import threading
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from app import create_app

WRITES = [
    ("PUT", "", {"title": "Replaced"}),
    ("PATCH", "", {"title": "Patched"}),
    ("PATCH", "/complete", None),
    ("DELETE", "", None),
]


def test_every_answer_with_a_task_carries_its_etag_and_it_moves_with_every_change(alice):
    created = alice.call("POST", json={"title": "Draft"})
    task = created.json()
    assert created.headers["ETag"] == task["etag"]
    fetched = alice.call("GET", f"/{task['id']}")
    assert fetched.headers["ETag"] == task["etag"]
    patched = alice.call("PATCH", f"/{task['id']}", json={"title": "Final"})
    assert patched.headers["ETag"] == patched.json()["etag"] != task["etag"]
    unchanged = alice.call("PATCH", f"/{task['id']}", json={"title": "Final"})
    assert unchanged.headers["ETag"] == patched.headers["ETag"], "a write that changes nothing keeps the ETag"
    completed = alice.call("PATCH", f"/{task['id']}/complete")
    assert completed.headers["ETag"] not in {task["etag"], patched.headers["ETag"]}
    listed = alice.list_tasks()["items"]
    assert [item["etag"] for item in listed] == [completed.headers["ETag"]]


@pytest.mark.parametrize("if_none_match", ["{etag}", '"other", {etag}', "W/{etag}", "*"])
def test_a_copy_that_is_still_fresh_gets_304_without_a_body(alice, if_none_match):
    task = alice.create_task()
    response = alice.call("GET", f"/{task['id']}", headers={"If-None-Match": if_none_match.format(etag=task["etag"])})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["ETag"] == task["etag"]


def test_a_stale_copy_gets_the_task(alice):
    task = alice.create_task()
    alice.call("PATCH", f"/{task['id']}", json={"title": "Changed elsewhere"})
    response = alice.call("GET", f"/{task['id']}", headers={"If-None-Match": task["etag"]})
    assert response.status_code == 200
    assert response.json()["title"] == "Changed elsewhere"


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_a_write_from_a_stale_copy_is_412_and_changes_nothing(alice, method, path, body):
    task = alice.create_task(title="Original")
    current = alice.call("PATCH", f"/{task['id']}", json={"priority": "high"}).json()
    response = alice.call(method, f"/{task['id']}{path}", json=body, headers={"If-Match": task["etag"]})
    assert response.status_code == 412, response.text
    problem = response.json()
    assert problem["code"] == "PRECONDITION_FAILED"
    assert problem["current_etag"] == response.headers["ETag"] == current["etag"]
    assert alice.call("GET", f"/{task['id']}").json() == current


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@pytest.mark.parametrize("if_match", ["{etag}", '"stale", {etag}', "*"])
def test_a_write_from_the_current_copy_goes_through(alice, method, path, body, if_match):
    task = alice.create_task()
    response = alice.call(
        method, f"/{task['id']}{path}", json=body, headers={"If-Match": if_match.format(etag=task["etag"])}
    )
    assert response.status_code in {200, 204}, response.text


def test_a_weak_etag_never_matches_if_match(alice):
    task = alice.create_task()
    response = alice.call("PATCH", f"/{task['id']}", json={"title": "x"}, headers={"If-Match": f"W/{task['etag']}"})
    assert response.status_code == 412


def test_if_match_on_a_task_that_is_not_there_is_404(alice, bob):
    task = bob.create_task()
    response = alice.call("PATCH", f"/{task['id']}", json={"title": "x"}, headers={"If-Match": "*"})
    assert response.status_code == 404


def both_tabs_write(user, task: dict, titles: dict[str, str]) -> dict:
    """Two tabs send their change at the same moment, each conditional on the same ETag."""
    start = threading.Barrier(len(titles))
    answers = {}

    def write(tab: str) -> None:
        start.wait()
        headers = {"If-Match": task["etag"]}
        answers[tab] = user.call("PATCH", f"/{task['id']}", json={"title": titles[tab]}, headers=headers)

    tabs = [threading.Thread(target=write, args=(tab,)) for tab in titles]
    for tab in tabs:
        tab.start()
    for tab in tabs:
        tab.join()
    return answers


def test_two_tabs_writing_from_the_same_copy_one_wins_and_one_is_told(alice):
    """Each round, two writers hold the same ETag: exactly one 200 and one 412, never a lost update."""
    for round_number in range(10):
        task = alice.create_task()
        titles = {"left": f"left {round_number}", "right": f"right {round_number}"}
        answers = both_tabs_write(alice, task, titles)
        assert sorted(answer.status_code for answer in answers.values()) == [200, 412]
        winner = next(tab for tab, answer in answers.items() if answer.status_code == 200)
        assert alice.call("GET", f"/{task['id']}").json()["title"] == titles[winner]


def test_a_service_that_requires_if_match_refuses_blind_writes_with_428(settings, tokens):
    with TestClient(create_app(replace(settings, require_if_match=True)), raise_server_exceptions=False) as client:
        auth = {"Authorization": f"Bearer {tokens.mint('careful')}"}
        created = client.post("/api/careful/tasks", json={"title": "x"}, headers=auth)
        assert created.status_code == 201, "creating needs no ETag"
        task = created.json()
        for method, path, body in WRITES:
            blind = client.request(method, f"/api/careful/tasks/{task['id']}{path}", json=body, headers=auth)
            assert blind.status_code == 428
            assert blind.json()["code"] == "PRECONDITION_REQUIRED"
        informed = client.patch(
            f"/api/careful/tasks/{task['id']}", json={"title": "y"}, headers={**auth, "If-Match": task["etag"]}
        )
        assert informed.status_code == 200
