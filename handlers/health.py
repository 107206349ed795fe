"""getHealth and getReadiness: the probes an orchestrator polls."""

from errors import DatabaseUnavailable, is_database_fault
from handlers import task_store


async def get_health():
    return {"status": "ok"}


async def get_readiness():
    try:
        await task_store().ping()
    except Exception as error:
        if is_database_fault(error):
            raise DatabaseUnavailable() from None
        raise
    return {"status": "ready"}
