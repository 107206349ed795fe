"""Every error leaves the service here, as an RFC 9457 problem with a stable `code`."""

import json
import logging
from http import HTTPStatus
from typing import ClassVar

import asyncpg
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from service.metrics import refused
from service.request_context import current_request_id

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
BEARER_CHALLENGE = 'Bearer realm="tasks"'
RETRY_AFTER_SECONDS = 5
LIMIT_CODES = {"BODY_TOO_LARGE", "TOO_MANY_PARAMETERS", "RATE_LIMITED", "TOO_MANY_STREAMS", "STREAMS_FULL"}
"""Problems that refuse a request for what it would cost: counted in the metrics."""
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


class ApiProblem(ProblemException):
    """A problem the service raises on purpose. Subclasses name the status and the code."""

    status_code = 400
    code = "BAD_REQUEST"

    def __init__(self, detail: str, *, errors: list[dict] | None = None, headers=None):
        super().__init__(
            status=self.status_code,
            title=HTTPStatus(self.status_code).phrase,
            detail=detail,
            headers=headers,
            ext={"code": self.code, **({"errors": errors} if errors is not None else {})},
        )


class InvalidRequest(ApiProblem):
    code = "VALIDATION_FAILED"

    def __init__(self, errors: list[dict], *, limit: int | None = None):
        if limit is not None and len(errors) > limit:
            detail = f"The request has more than {limit} violations of the contract; the first {limit} are listed."
            errors = errors[:limit]
        else:
            noun = "violation" if len(errors) == 1 else "violations"
            detail = f"The request has {len(errors)} {noun} of the contract."
        super().__init__(detail, errors=errors)


class MalformedBody(ApiProblem):
    code = "MALFORMED_BODY"


class InvalidCursor(ApiProblem):
    code = "INVALID_CURSOR"


class NotAuthenticated(ApiProblem):
    status_code = 401
    code = "UNAUTHORIZED"

    def __init__(self, detail: str):
        challenge = f'{BEARER_CHALLENGE}, error="invalid_token", error_description="{detail}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class WrongUser(ApiProblem):
    status_code = 403
    code = "FORBIDDEN"


class PreconditionFailed(ApiProblem):
    status_code = 412
    code = "PRECONDITION_FAILED"

    def __init__(self, current_etag: str) -> None:
        super().__init__(
            f"The task has changed: its ETag is now {current_etag}. Nothing was changed; fetch it again.",
            headers={"ETag": current_etag},
        )
        self.ext["current_etag"] = current_etag


class PreconditionRequired(ApiProblem):
    status_code = 428
    code = "PRECONDITION_REQUIRED"

    def __init__(self) -> None:
        super().__init__("This service requires If-Match with the task's ETag on every change.")


class IdempotencyKeyReused(ApiProblem):
    status_code = 422
    code = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was used with another request body; use a new key for a new task.")


class IdempotencyKeyInUse(ApiProblem):
    status_code = 409
    code = "IDEMPOTENCY_KEY_IN_USE"

    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is still being processed; retry shortly.")


class SyncTokenExpired(ApiProblem):
    status_code = 410
    code = "SYNC_TOKEN_EXPIRED"

    def __init__(self) -> None:
        super().__init__("Deletions since this sync token are no longer kept; sync again without `since`.")


class InvalidSyncToken(ApiProblem):
    code = "INVALID_SYNC_TOKEN"

    def __init__(self) -> None:
        super().__init__("The `since` token is not one this service made; sync again without it.")


class SchemaOutOfDate(ApiProblem):
    status_code = 503
    code = "SCHEMA_OUT_OF_DATE"

    def __init__(self, *, expected: str, found: str | None) -> None:
        super().__init__(
            f"The database schema is at migration {found or 'none'}, the code expects {expected}: "
            "run the migrations (`cli.py migrate`).",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class KeysUnavailable(ApiProblem):
    status_code = 503
    code = "AUTH_KEYS_UNAVAILABLE"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class TaskNotFound(ApiProblem):
    status_code = 404
    code = "TASK_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("There is no task with this id among your tasks.")


class BodyTooLarge(ApiProblem):
    status_code = 413
    code = "BODY_TOO_LARGE"

    def __init__(self, limit: int) -> None:
        # The rest of the body is never read: the connection closes after the answer.
        super().__init__(f"The body is larger than {limit} bytes.", headers={"Connection": "close"})


class TooManyParameters(ApiProblem):
    code = "TOO_MANY_PARAMETERS"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The query string has more than {limit} parameters.")


class QuotaExceeded(ApiProblem):
    """403, not 409 or 429: retrying will not help (a client's retry loop takes those for
    transient), only deleting will; as Google Tasks answers its own quota."""

    status_code = 403
    code = "QUOTA_EXCEEDED"

    DETAILS: ClassVar[dict[str, str]] = {
        "tasks": "You hold {limit:,} tasks, as many as a user may; delete some first.",
        "idempotency_keys": "You hold {limit:,} live idempotency keys, as many as a user may; "
        "create without a key, or wait until the oldest expire.",
    }

    def __init__(self, quota: str, limit: int) -> None:
        super().__init__(self.DETAILS[quota].format(limit=limit))
        self.ext.update(quota=quota, limit=limit)


class RateLimited(ApiProblem):
    status_code = 429
    code = "RATE_LIMITED"


class TooManyStreams(ApiProblem):
    status_code = 429
    code = "TOO_MANY_STREAMS"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"This user already has {limit} event streams open here; close one or retry later.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class StreamsFull(ApiProblem):
    status_code = 503
    code = "STREAMS_FULL"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"This server process holds {limit} event streams, as many as it may; retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class DatabaseFault(ApiProblem):
    """The database could not do the work; a retry later may succeed."""

    status_code = 503
    code = "DATABASE_UNAVAILABLE"

    def __init__(self, detail: str, code: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        if code:
            self.ext["code"] = code


# SQLSTATEs of a server that is down, starting, stopping or out of connections (PostgreSQL
# appendix A): class 08 is every connection exception.
_SERVER_STATES = {
    "57P01": "The database is shutting down; nothing was changed. Try again shortly.",
    "57P02": "The database is restarting after a crash; nothing was changed. Try again shortly.",
    "57P03": "The database is starting up; nothing was changed. Try again shortly.",
    "53300": "The database has no free connections; nothing was changed. Try again shortly.",
}
_LOST = "The connection to the database failed; nothing was changed. Try again shortly."
_UNDEFINED = {"42P01", "42703", "42883"}  # undefined table, column, function: a schema behind the code
_TIMED_OUT = "The database did not answer in time. Try again shortly."


def database_fault(exc: BaseException) -> DatabaseFault | None:
    """The 503 for a failure of the database rather than of a statement; None for the others."""
    if isinstance(exc, PoolTimeout):
        return DatabaseFault(
            "Every database connection is busy; nothing was changed. Try again shortly.", code="DATABASE_BUSY"
        )
    if isinstance(exc, TimeoutError):  # asyncio's too: connect and statement timeouts
        return DatabaseFault(_TIMED_OUT, code="DATABASE_TIMEOUT")
    # SQLAlchemy's wrapped errors carry the driver's in `orig`; the hot path's are asyncpg's own.
    sqlstate = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    if sqlstate == "57014":  # query_canceled: the server's statement_timeout
        return DatabaseFault(_TIMED_OUT, code="DATABASE_TIMEOUT")
    if sqlstate in _SERVER_STATES:
        return DatabaseFault(_SERVER_STATES[sqlstate])
    if sqlstate in _UNDEFINED:  # an operator's step left out, not a bug: the migrations
        return DatabaseFault(
            "The database schema is behind this code; nothing was changed. Run the migrations (`cli.py migrate`).",
            code="SCHEMA_OUT_OF_DATE",
        )
    lost = OperationalError | InterfaceError | OSError | asyncpg.InterfaceError | asyncpg.InternalClientError
    if sqlstate.startswith("08") or isinstance(exc, lost):
        return DatabaseFault(_LOST)
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return DatabaseFault(_LOST)
    return None


def problem_document(status: int, detail: str, *, code: str | None = None, title: str | None = None) -> dict:
    """The RFC 9457 body every error of the service has."""
    return {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code or HTTPStatus(status).name,
        "request_id": current_request_id(),
    }


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    code: str | None = None,
    headers: dict | None = None,
    ext: dict | None = None,
) -> ConnexionResponse:
    body = {**problem_document(status, detail, code=code, title=title), **(ext or {})}
    if code in LIMIT_CODES:
        refused(code)
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", BEARER_CHALLENGE)
    return ConnexionResponse(
        status_code=status,
        mimetype=PROBLEM_JSON,
        content_type=PROBLEM_JSON,
        body=json.dumps(body),
        headers=headers,
    )


def problem_from_exception(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """The one error handler: known problems keep their status, faults become 503 or 500."""
    if isinstance(exc, ProblemException):
        if exc.status >= 500 and not isinstance(exc, DatabaseFault | StreamsFull):
            logger.error("%s: %s", type(exc).__name__, exc.detail)
        ext = dict(exc.ext or {})
        return problem(
            exc.status,
            str(exc.detail or exc.title),
            title=exc.title,
            code=ext.pop("code", None),
            headers=exc.headers,
            ext=ext,
        )
    if isinstance(exc, HTTPException):
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)
    fault = database_fault(exc)
    if fault is not None:
        logger.warning("database fault: %s: %s", type(exc).__name__, fault.detail)
        return problem_from_exception(_request, fault)
    logger.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return problem(500, "The server hit a bug; report the request_id to get it fixed.")


class AllowedMethods:
    """The methods the contract declares for a path: Connexion's 405s list only one route's."""

    def __init__(self, document: dict) -> None:
        self._paths = []
        for template, item in document.get("paths", {}).items():
            methods = {method.upper() for method in item if method in HTTP_METHODS}
            if "GET" in methods:
                methods.add("HEAD")
            self._paths.append((compile_path(template)[0], ", ".join(sorted(methods))))

    def header_for(self, path: str) -> dict:
        for pattern, methods in self._paths:
            if pattern.match(path):
                return {"Allow": methods}
        return {}


def register(app, document: dict) -> None:
    """Makes every error of `app` a problem; `document` is the contract, for `Allow` headers."""
    allowed = AllowedMethods(document)

    async def handle(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:  # async: no thread hop
        if isinstance(exc, ProblemException) and exc.status == 401:
            limiter = getattr(request.state, "rate_limiter", None)
            address = request.client.host if request.client else None
            refusal = limiter and await limiter.failed_authentication(address)
            if refusal:
                return problem_from_exception(request, refusal)
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            allow = allowed.header_for(request.url.path) or exc.headers  # the docs routes know their own
            return problem(405, f"{request.method} is not allowed here.", headers=allow)
        return problem_from_exception(request, exc)

    for exc_class in (ProblemException, HTTPException, Exception):
        app.add_error_handler(exc_class, handle)
