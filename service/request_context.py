"""What every request gets on the way in and every response on the way out: a request id
(`X-Request-ID`, problem bodies, log lines), the headers every answer carries, headers that
code deeper in the stack adds for this request (rate limits), one access log line, and
`Connection: close` on an answer given before the request's body was read: what follows on
that connection is the rest of an unread body, or, from a client that sent `Expect:
100-continue` and so no body at all, its next request, which would be read as this one's body."""

import logging
import os
import random
import re
import threading
import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
STANDARD_HEADERS = {**NOSNIFF, "Cache-Control": "no-store"}
CACHEABLE_PREFIX = "/api/docs/assets/"  # Swagger UI's static files may be cached: nosniff only
CLOSE = {"Connection": "close"}

_request_id: ContextVar[str] = ContextVar("request_id", default="-")
_extra_headers: ContextVar[dict[str, str] | None] = ContextVar("extra_headers", default=None)
access_log = logging.getLogger("tasks.access")


def current_request_id() -> str:
    return _request_id.get()


def new_request_id() -> str:
    """32 hex digits, like a UUID's, from the process's PRNG: an id to find a request by, not a
    secret (`uuid4` asks the kernel for randomness on every request)."""
    return f"{random.getrandbits(128):032x}"


def add_response_headers(headers: dict[str, str]) -> None:
    """Headers for the answer to the current request, whatever that answer turns out to be."""
    extra = _extra_headers.get()
    if extra is not None:
        extra.update(headers)


class RequestIdFilter(logging.Filter):
    """Gives every log record a `request_id` attribute for the formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


access_log.addFilter(RequestIdFilter())


class AccessRecord(logging.LogRecord):
    """One access log line's record, with every attribute a `LogRecord` has, set at once:
    `LogRecord`'s own constructor checks its arguments, parses its caller's path and reads the
    clock and thread with a call each, and `Logger.info` goes through `makeRecord` and `extra`'s
    checks; together they were half of the access log's instructions (callgrind: 100,000 per
    request before, 53,000 now, the writer thread's formatting included)."""

    def __init__(self, request_id: str, method: str, path: str, status: int, elapsed_ms: float, extensions: dict):
        created = time.time()
        self.__dict__.update(
            name=access_log.name,
            msg="%s %s %d %.1fms",
            args=(method, path, status, elapsed_ms),
            levelname="INFO",
            levelno=logging.INFO,
            pathname=__file__,
            filename=_FILENAME,
            module=_MODULE,
            exc_info=None,
            exc_text=None,
            stack_info=None,
            lineno=0,
            funcName=None,
            created=created,
            msecs=int((created - int(created)) * 1000) + 0.0,
            relativeCreated=(created - logging._startTime) * 1000,
            thread=threading.get_ident() if logging.logThreads else None,
            threadName=threading.current_thread().name if logging.logThreads else None,
            processName=None,
            process=os.getpid() if logging.logProcesses else None,
            request_id=request_id,
            method=method,
            path=path,
            status=status,
            duration_ms=round(elapsed_ms, 1),
            operation_id=extensions.get("connexion_routing", {}).get("operation_id"),
            user_id=extensions.get("connexion_context", {}).get("user"),
        )


_FILENAME = os.path.basename(__file__)
_MODULE = os.path.splitext(_FILENAME)[0]


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b" \t0")):
            return True
    return False


def _encoded(headers: dict[str, str]) -> dict[bytes, bytes]:
    return {name.lower().encode("latin-1"): value.encode("latin-1") for name, value in headers.items()}


_NOSNIFF, _STANDARD, _CLOSE = _encoded(NOSNIFF), _encoded(STANDARD_HEADERS), _encoded(CLOSE)
_HEADER_NAME = HEADER.lower().encode("latin-1")


def _offered_request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == _HEADER_NAME:
            return value.decode("latin-1")
    return ""


class RequestContextMiddleware:
    """Takes the caller's request id when it is sane, else makes one; logs one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = _offered_request_id(scope)
        request_id = offered if offered and SANE_REQUEST_ID.fullmatch(offered) else new_request_id()
        id_token = _request_id.set(request_id)
        extra: dict[str, str] = {}
        extra_token = _extra_headers.set(extra)
        cacheable = scope["path"].startswith(CACHEABLE_PREFIX)
        started = time.perf_counter()
        status = 500
        body_unread = _has_body(scope)

        async def receive_tracked() -> Message:
            nonlocal body_unread
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_unread = False  # read to its end, or the client has gone
            return message

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                ours = {_HEADER_NAME: request_id.encode("latin-1")}
                ours.update(_NOSNIFF if cacheable and status < 400 else _STANDARD)
                if extra:
                    ours.update(_encoded(extra))
                if body_unread:
                    ours.update(_CLOSE)
                kept = [(name, value) for name, value in message.get("headers", ()) if name.lower() not in ours]
                message["headers"] = kept + list(ours.items())  # ours replace any of the same name
            await send(message)

        extensions = scope.setdefault("extensions", {})  # Connexion names the operation and user in it
        try:
            await self.app(scope, receive_tracked if body_unread else receive, send_with_context)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                elapsed_ms = (time.perf_counter() - started) * 1000
                method, path = scope["method"], scope["path"]
                access_log.handle(AccessRecord(request_id, method, path, status, elapsed_ms, extensions))
            _extra_headers.reset(extra_token)
            _request_id.reset(id_token)
