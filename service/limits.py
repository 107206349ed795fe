"""Bounds on what one request may make the application hold, checked before anything parses
it. The server (`service/server.py`) bounds the URL, the headers and the time a client may
take; this middleware bounds the query string's parameters and the body.

A body with a `Content-Length` over the limit is refused unread. A chunked body is read up
to the limit, never beyond, and handed on with the `Content-Length` it turned out to have
(Connexion takes a request without one for a request without a body).
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BodyTooLarge, MalformedBody, TooManyParameters


class RequestLimits:
    def __init__(self, app: ASGIApp, *, max_query_parameters: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_query_parameters = max_query_parameters
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope["query_string"]
        if query and query.count(b"&") + 1 > self.max_query_parameters:
            raise TooManyParameters(self.max_query_parameters)
        content_length = chunked = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = value
        if content_length is not None:
            if not content_length.isdigit():
                raise MalformedBody("Content-Length is not a number of bytes.")
            if int(content_length) > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
        elif chunked is not None:
            scope, receive = await self._with_length(scope, receive)
        await self.app(scope, receive, send)

    async def _with_length(self, scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
        body = bytearray()
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app will see the same on its next receive
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            more_body = message.get("more_body", False)
        headers = [(name, value) for name, value in scope["headers"] if name != b"transfer-encoding"]
        headers.append((b"content-length", str(len(body)).encode()))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return {**scope, "headers": headers}, replay
