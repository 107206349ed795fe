"""getHealth and getReadiness: the probes an orchestrator polls."""

from handlers import task_store


async def get_health():
    return {"status": "ok"}


async def get_readiness():
    """A database that does not answer raises, and every such fault is a 503 (errors.py)."""
    await task_store().ping()
    return {"status": "ready"}
