"""A client of `streamChanges` for the tests: one open stream, read in a thread, its events
parsed as a browser's EventSource parses them."""

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import orjson

from db.changes import decode_since
from service.event_stream import parse


def events_of(lines: Iterator[str]) -> Iterator[dict | str]:
    """Each event of a stream (its `data` parsed as JSON into `page`), and each comment as text."""
    block: list[str] = []
    for line in lines:
        if line:
            block.append(line)
            continue
        event = parse("\n".join(block))
        if event is not None:
            yield {**event, "page": orjson.loads(event["data"])}
        elif block:
            yield "\n".join(block)
        block = []


class OpenStream:
    """GET /api/{user}/tasks/events held open in a thread; `next_event()` takes what arrived."""

    def __init__(self, base_url: str, user_id: str, token: str, *, last_event_id=None, **params) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=120))
        self.request = self.client.build_request("GET", f"/api/{user_id}/tasks/events", headers=headers, params=params)
        self.arrived: queue.Queue = queue.Queue()
        self.opened, self.ended = threading.Event(), threading.Event()
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        threading.Thread(target=self._read, daemon=True).start()
        assert self.opened.wait(30), "the stream did not answer"

    def _read(self) -> None:
        try:
            response = self.client.send(self.request, stream=True)
            if response.status_code != 200:
                response.read()
            self.response = response
            self.opened.set()
            if response.status_code == 200:
                for item in events_of(response.iter_lines()):
                    self.arrived.put((time.monotonic(), item))
        except (httpx.HTTPError, RuntimeError) as error:  # closed by the test, or cut off
            self.error = error
        finally:
            self.opened.set()
            self.ended.set()

    @property
    def status(self) -> int:
        return self.response.status_code if self.response is not None else 0

    def next_item(self, timeout: float = 10.0) -> tuple[float, dict | str]:
        return self.arrived.get(timeout=timeout)

    def next_event(self, timeout: float = 10.0) -> dict:
        """The next event, skipping comments; queue.Empty if none comes in time."""
        deadline = time.monotonic() + timeout
        while True:
            _, item = self.arrived.get(timeout=max(deadline - time.monotonic(), 0.001))
            if isinstance(item, dict):
                return item

    def events_until_end(self, timeout: float = 30.0) -> list[dict]:
        assert self.ended.wait(timeout), "the stream did not end"
        items = []
        while not self.arrived.empty():
            items.append(self.arrived.get())
        return [item for _, item in items if isinstance(item, dict)]

    def close(self) -> None:
        """Ends the stream at once: its socket shut down, which wakes the reading thread (closing
        the client alone left it blocked until the server next wrote, a keep-alive comment)."""
        stream = self.response.extensions.get("network_stream") if self.response is not None else None
        connection = stream.get_extra_info("socket") if stream is not None else None
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.client.close()
        self.ended.wait(5)

    def __enter__(self) -> "OpenStream":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def revision_of(event: dict) -> int:
    return decode_since(event["id"])
