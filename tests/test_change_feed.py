"""An offline client catches up from its last sync token: every change after it, each task
once as it is now, the ids of deleted tasks, page by page; never a change missed."""

import asyncio
import random
import threading

from db.engine import create_engine
from db.housekeeping import purge_expired


def changes(user, **params):
    response = user.client.get(f"/api/{user.id}/tasks/changes", headers=user.auth, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def sync(user, since=None, limit=100) -> tuple[dict, dict, str]:
    """All changes after `since`, page after page: (tasks by id, deleted ids, the new token)."""
    changed, deleted = {}, set()
    while True:
        feed = changes(user, **({"since": since} if since else {}), limit=limit)
        for task in feed["changes"]:
            changed[task["id"]] = task
            deleted.discard(task["id"])
        for task_id in feed["deleted"]:
            changed.pop(task_id, None)
            deleted.add(task_id)
        since = feed["next_since"]
        if not feed["has_more"]:
            return changed, deleted, since


def forget_deletions(settings) -> None:
    """Purges every tombstone at once, as the housekeeping does once they are 30 days old."""

    async def purge():
        engine = create_engine(settings)
        try:
            await purge_expired(engine, idempotency_key_seconds=86400, tombstone_seconds=0)
        finally:
            await engine.dispose()

    asyncio.run(purge())


def test_a_first_sync_gets_every_task_and_a_token(alice):
    tasks = [alice.create_task(title=f"task {n}") for n in range(3)]
    feed = changes(alice)
    assert [task["id"] for task in feed["changes"]] == [task["id"] for task in tasks]
    assert feed["changes"] == tasks
    assert feed["deleted"] == [] and feed["has_more"] is False
    assert changes(alice, since=feed["next_since"])["changes"] == [], "nothing new since"


def test_changes_since_a_token_are_each_task_once_as_it_is_now_and_the_deleted_ids(alice):
    kept, changed, doomed = (alice.create_task(title=title) for title in ("kept", "changed", "doomed"))
    token = changes(alice)["next_since"]
    alice.call("PATCH", f"/{changed['id']}", json={"title": "changed once"})
    alice.call("PATCH", f"/{changed['id']}/complete")
    alice.call("DELETE", f"/{doomed['id']}")
    born = alice.create_task(title="born")
    feed = changes(alice, since=token)
    assert [task["id"] for task in feed["changes"]] == [changed["id"], born["id"]]
    assert feed["changes"][0]["title"] == "changed once" and feed["changes"][0]["completed"] is True
    assert feed["deleted"] == [doomed["id"]]
    assert kept["id"] not in {task["id"] for task in feed["changes"]}


def test_a_long_feed_comes_in_pages(alice):
    for n in range(5):
        alice.create_task(title=f"task {n}")
    first = changes(alice, limit=2)
    assert len(first["changes"]) == 2 and first["has_more"] is True
    second = changes(alice, since=first["next_since"], limit=2)
    third = changes(alice, since=second["next_since"], limit=2)
    assert len(third["changes"]) == 1 and third["has_more"] is False
    titles = [task["title"] for page in (first, second, third) for task in page["changes"]]
    assert titles == [f"task {n}" for n in range(5)]


def test_a_token_from_before_the_deletions_horizon_is_410_and_a_full_sync_still_works(alice, settings):
    survivor, doomed = alice.create_task(title="survivor"), alice.create_task(title="doomed")
    old_token = changes(alice)["next_since"]
    alice.call("DELETE", f"/{doomed['id']}")
    forget_deletions(settings)
    response = alice.client.get(f"/api/{alice.id}/tasks/changes", headers=alice.auth, params={"since": old_token})
    assert response.status_code == 410
    assert response.json()["code"] == "SYNC_TOKEN_EXPIRED"
    assert [task["id"] for task in changes(alice)["changes"]] == [survivor["id"]]


def test_a_token_the_service_did_not_make_is_400(alice):
    response = alice.client.get(f"/api/{alice.id}/tasks/changes", headers=alice.auth, params={"since": "bm9wZQ"})
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_SYNC_TOKEN"


def test_a_client_polling_during_concurrent_writes_ends_with_exactly_the_final_state(make_user):
    """Writers create, change and delete while a reader polls the feed and replays it onto a
    copy; once the writers stop and the reader syncs once more, the copy is the server's state."""
    user = make_user("syncer")
    stop = threading.Event()
    replica: dict[str, dict] = {}
    token = None

    def writer(seed: int) -> None:
        chance = random.Random(seed)
        mine: list[str] = []
        for n in range(40):
            action = chance.random()
            if action < 0.5 or not mine:
                mine.append(user.create_task(title=f"w{seed} {n}")["id"])
            elif action < 0.8:
                user.call("PATCH", f"/{chance.choice(mine)}", json={"title": f"w{seed} edit {n}"})
            else:
                user.call("DELETE", f"/{mine.pop(chance.randrange(len(mine)))}")

    def reader() -> None:
        nonlocal token
        while not stop.is_set():
            changed, deleted, token = sync(user, token, limit=7)
            replica.update(changed)
            for task_id in deleted:
                replica.pop(task_id, None)

    writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    polling = threading.Thread(target=reader)
    polling.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    polling.join()
    changed, deleted, _ = sync(user, token)
    replica.update(changed)
    for task_id in deleted:
        replica.pop(task_id, None)
    final = {task["id"]: task for task in user.list_tasks(limit=200)["items"]}
    assert replica == final


def test_a_since_token_beyond_any_revision_is_400_not_a_crash(alice):
    too_big = "cjk5OTk5OTk5OTk5OTk5OTk5OTk"  # base64url of "r" and 19 nines: more than a bigint holds
    response = alice.client.get(f"/api/{alice.id}/tasks/changes", headers=alice.auth, params={"since": too_big})
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_SYNC_TOKEN"
