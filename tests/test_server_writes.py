"""How the server puts an answer on the wire: the head of an answer of known length goes out
with its body, in one write (one send, one TCP segment); a HEAD answer, and an event stream's
head, go out at once."""

import asyncio

import uvicorn
from uvicorn.server import ServerState

from service.server import BoundedHttpToolsProtocol, ServerLimits

LIMITS = ServerLimits(max_url_bytes=8192, max_header_bytes=16384, header_timeout=5, body_timeout=5)


class Wire:
    """The client's side of a connection: what the server wrote, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def fixed_answer(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b'{"done":true}'})


async def streamed_answer(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await asyncio.sleep(0.05)  # the head must not wait for the first event
    await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def exchange(app, request: bytes) -> list[bytes]:
    async def run() -> list[bytes]:
        config = uvicorn.Config(app, http="httptools", log_level="warning", access_log=False)
        protocol = BoundedHttpToolsProtocol(config, ServerState(), {}, limits=LIMITS)
        wire = Wire()
        protocol.connection_made(wire)
        protocol.data_received(request)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if protocol.cycle is not None and protocol.cycle.response_complete:
                break
        protocol.connection_lost(None)
        return wire.writes

    return asyncio.run(run())


def test_an_answer_of_known_length_is_written_with_its_head_in_one_write():
    writes = exchange(fixed_answer, b"GET /tasks HTTP/1.1\r\nHost: api\r\n\r\n")
    assert len(writes) == 1
    head, body = writes[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b'{"done":true}'


def test_a_head_answer_has_its_head_written_and_no_body():
    writes = exchange(fixed_answer, b"HEAD /tasks HTTP/1.1\r\nHost: api\r\n\r\n")
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK") and writes[0].endswith(b"\r\n\r\n")


def test_a_streamed_answer_has_its_head_written_before_its_first_event():
    writes = exchange(streamed_answer, b"GET /tasks/events HTTP/1.1\r\nHost: api\r\n\r\n")
    assert writes[0].startswith(b"HTTP/1.1 200 OK") and writes[0].endswith(b"\r\n\r\n")
    assert b"data: 1" in writes[1]
