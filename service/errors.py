"""Every error leaves the service here, as an RFC 9457 problem with a stable `code`."""

import asyncio
import json
import logging
from http import HTTPStatus

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from service.request_id import current_request_id

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
BEARER_CHALLENGE = 'Bearer realm="tasks"'
RETRY_AFTER_SECONDS = 5
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

    def __init__(self, errors: list[dict]):
        noun = "violation" if len(errors) == 1 else "violations"
        super().__init__(f"The request has {len(errors)} {noun} of the contract.", errors=errors)


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


class TaskNotFound(ApiProblem):
    status_code = 404
    code = "TASK_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("There is no task with this id among your tasks.")


class DatabaseUnavailable(ApiProblem):
    status_code = 503
    code = "DATABASE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(
            "The database cannot be reached; nothing was changed. Try again shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


DATABASE_FAULTS = (OperationalError, InterfaceError, PoolTimeout, OSError, asyncio.TimeoutError)
"""Failures of the database connection rather than of a statement: they become 503s."""


def is_database_fault(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, DATABASE_FAULTS)


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    code: str | None = None,
    headers: dict | None = None,
    ext: dict | None = None,
) -> ConnexionResponse:
    body = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code or HTTPStatus(status).name,
        "request_id": current_request_id(),
        **(ext or {}),
    }
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
        if exc.status >= 500:
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
    if is_database_fault(exc):
        logger.warning("database unavailable: %s", type(exc).__name__)
        return problem_from_exception(_request, DatabaseUnavailable())
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
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return problem(405, f"{request.method} is not allowed here.", headers=allowed.header_for(request.url.path))
        return problem_from_exception(request, exc)

    for exc_class in (ProblemException, HTTPException, Exception):
        app.add_error_handler(exc_class, handle)
