"""listChanges: the change feed an offline client syncs with."""

from db.changes import decode_since
from service.contract import request


async def list_changes(user_id: str, limit: int, since: str | None = None):
    feed = await request.state.changes.after(user_id, decode_since(since) if since else None, limit)
    return feed.page()
