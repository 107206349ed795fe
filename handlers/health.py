"""getHealth and getReadiness: the probes an orchestrator polls."""

from service.contract import request


async def get_health():
    """The process answers; nothing else is asked."""
    return {"status": "ok"}


async def get_readiness():
    """The database answers and is at the migration the code expects; else a 503 (errors.py)."""
    await request.state.schema.ensure_current()
    return {"status": "ready"}
