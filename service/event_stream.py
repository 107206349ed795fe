"""Server-Sent Events (text/event-stream): how an event is written, and how a stream is checked
against the contract event by event, as it goes, when responses are validated.

Connexion validates a response body by collecting it whole, which a stream never is; the
contract (OpenAPI 3.1) describes each event with the media type's `schema`, the object an SSE
parser hands over (`event`, `id`, `retry`, `data`), and `data`'s JSON with `contentSchema`.
"""

import re
import typing as t

import orjson
from connexion.exceptions import NonConformingResponseBody
from connexion.validators.abstract import AbstractResponseBodyValidator
from jsonschema import Draft202012Validator

MEDIA_TYPE = "text/event-stream"
KEEP_ALIVE = b": keep-alive\n\n"
"""A comment line: clients ignore it, proxies see the connection in use."""


def event(name: str, data: t.Any, *, event_id: str, retry_ms: int | None = None) -> bytes:
    """One event whose data is `data` as JSON on one line (JSON escapes its line breaks)."""
    head = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    body = orjson.dumps(data, default=str)  # default: asyncpg's own UUID type, as the JSON answers
    return f"{head}id: {event_id}\nevent: {name}\ndata: ".encode() + body + b"\n\n"


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def parse(block: str) -> dict | None:
    """One event's lines as an SSE parser reads them (WHATWG); None for a comment-only block."""
    fields: dict[str, t.Any] = {}
    data: list[str] = []
    for line in _LINE_BREAK.split(block):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "retry" and value.isdigit():
            fields["retry"] = int(value)
        elif name in {"event", "id"}:
            fields[name] = value
    if not data:
        return None
    return {"event": "message", **fields, "data": "\n".join(data)}


class EventStreamValidator(AbstractResponseBodyValidator):
    """Passes every chunk on at once and checks each event once it is complete: the event
    against the media type's schema, its data against the `contentSchema` of `data`."""

    def _checkers(self) -> tuple[Draft202012Validator, Draft202012Validator | None]:
        content_schema = self._schema.get("properties", {}).get("data", {}).get("contentSchema")
        checker = Draft202012Validator.FORMAT_CHECKER
        return (
            Draft202012Validator(self._schema, format_checker=checker),
            Draft202012Validator(content_schema, format_checker=checker) if content_schema else None,
        )

    def _check(self, block: str, checkers) -> None:
        parsed = parse(block)
        if parsed is None:
            return
        problems = [error.message for error in checkers[0].iter_errors(parsed)]
        if checkers[1] is not None and not problems:
            try:
                problems = [error.message for error in checkers[1].iter_errors(orjson.loads(parsed["data"]))]
            except orjson.JSONDecodeError as error:
                problems = [f"data is not JSON: {error}"]
        if problems:
            raise NonConformingResponseBody("Event breaks the contract: " + "; ".join(problems))

    def wrap_send(self, send):
        checkers = self._checkers()
        pending = ""

        async def send_(message: t.MutableMapping[str, t.Any]) -> None:
            nonlocal pending
            if message["type"] == "http.response.body":
                pending += message.get("body", b"").decode(self._encoding)
                *complete, pending = re.split(r"\r\n\r\n|\n\n|\r\r", pending)
                for block in complete:
                    self._check(block, checkers)
                if not message.get("more_body", False) and pending.strip():
                    self._check(pending, checkers)
            await send(message)

        return send_
