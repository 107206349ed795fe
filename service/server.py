"""uvicorn, bounded: what a client can make the server hold or wait for before the application
sees a request, and problem+json for the answers the server gives itself.

uvicorn (httptools) reads a request head of any size and waits for it forever. This protocol
refuses a URL over `max_url_bytes` (414) and a head (request line and headers) over
`max_header_bytes` (431) while it is still arriving, gives a client `header_timeout` seconds
from connecting (or from its previous answer) to send a whole head and `body_timeout` seconds
more for the body (408), and answers malformed HTTP with a 400 problem instead of uvicorn's
plain text.
"""

import asyncio
import contextlib
import errno
import functools
import json
import logging
import resource
import socket
import weakref
from dataclasses import dataclass

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.errors import PROBLEM_JSON, problem_document
from service.metrics import refused
from service.request_context import HEADER, STANDARD_HEADERS, new_request_id
from service.settings import Settings


@dataclass(frozen=True)
class ServerLimits:
    max_url_bytes: int
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> "ServerLimits":
        return cls(
            max_url_bytes=settings.max_url_bytes,
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            max_connections=settings.max_connections,
        )


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; uvicorn then calls send_400_response."""


class _HeadWithBody:
    """The transport as a response cycle sees it: the head of an answer of known length waits
    for the first part of its body and goes out with it, in one send and one TCP segment
    (uvicorn writes them apart: two sends and two wake-ups of the client per answer). An answer
    of unknown length (an event stream) or without a body (HEAD, an empty one) has its head
    written at once."""

    __slots__ = ("_head", "_head_written", "cycle", "transport")

    def __init__(self, transport: asyncio.Transport, cycle) -> None:
        # Weakly: the cycle holds this as its transport, and a cycle of references would keep each
        # request's scope and headers until a garbage collection (2,000 requests with 30 KB
        # headers: 48 MB, tests/test_shared_costs.py).
        self.transport, self.cycle = transport, weakref.proxy(cycle)
        self._head: bytes | None = None
        self._head_written = False

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif self.cycle.response_started and not self._head_written:  # uvicorn writing the head
            self._head_written = True
            cycle = self.cycle
            body_follows = cycle.expected_content_length > 0 and cycle.scope["method"] != "HEAD"
            if cycle.chunked_encoding is False and body_follows:
                self._head = data
                return
        self.transport.write(data)

    def close(self) -> None:
        if self._head is not None:  # the body never came: the head alone, as uvicorn would have sent it
            self.transport.write(self._head)
            self._head = None
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args, limits: ServerLimits, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._reading_head = True
        self._unparsed_bytes = 0  # received since the current head began
        self._url_bytes = self._head_bytes = 0  # parsed parts of the current head
        self._refusal: tuple[int, str, str] | None = None
        self._read_timer: asyncio.TimerHandle | None = None  # the connection's one timer
        self._deadline: float | None = None  # when what is awaited must have arrived (loop time)
        self._awaited = ""

    # --- time ---------------------------------------------------------------------------------

    # One deadline per connection, moved by each request, and one timer that checks it when it
    # fires and re-arms itself if the deadline moved on: a timer made and cancelled per request
    # (two per request with a body) cost a heap push and a cancelled handle each.

    def _arm(self, seconds: float, what: str) -> None:
        self._deadline, self._awaited = self.loop.time() + seconds, what
        if self._read_timer is not None and self._read_timer.when() > self._deadline:
            self._read_timer.cancel()  # it would fire too late for this deadline
            self._read_timer = None
        if self._read_timer is None:
            self._read_timer = self.loop.call_at(self._deadline, self._check_deadline)

    def _disarm(self) -> None:
        self._deadline = None  # the timer, if any, finds nothing to do when it fires

    def _check_deadline(self) -> None:
        self._read_timer = None
        if self._deadline is None:
            return
        if self.loop.time() + 0.001 < self._deadline:  # asyncio may run a timer a hair early
            self._read_timer = self.loop.call_at(self._deadline, self._check_deadline)
            return
        self._deadline = None
        self._too_slow(self._awaited)

    def _too_slow(self, what: str) -> None:
        if self.transport.is_closing():
            return
        if what == "request body" and self.cycle is not None and self.cycle.response_complete:
            self.transport.close()  # answered already: a 408 now would answer nothing the client asked
            return
        if self.cycle is not None and not self.cycle.response_complete:
            if self.cycle.response_started:
                self.transport.close()
                return
            self.cycle.disconnected = True  # the application's answer, if any, goes nowhere
        self._answer(408, "REQUEST_TIMEOUT", f"The {what} did not arrive in time.")

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.server_state.connections) > self.limits.max_connections:  # answered at once, not queued
            detail = f"The server holds {self.limits.max_connections} connections, all it takes; try again shortly."
            self._answer(503, "TOO_MANY_CONNECTIONS", detail)
            return
        self._arm(self.limits.header_timeout, "request head")
        # asyncio sets TCP_NODELAY only on sockets it knows are TCP; a listening socket handed to
        # worker processes (--workers) loses that, and every answer then waits ~40 ms for
        # delayed ACKs (measured: 227 against 5,187 /health requests/s at 10 connections).
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self._disarm()
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        super().connection_lost(exc)

    # --- size ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        # httptools hands a header over only once it is whole, so an unfinished head is measured
        # as it arrives; a finished one by its parts, in on_url and on_header.
        if self._reading_head:
            self._unparsed_bytes += len(data)
        super().data_received(data)
        unfinished = self._reading_head and not self.transport.is_closing()
        if unfinished and self._unparsed_bytes > self.limits.max_header_bytes:
            self._answer(431, "HEADERS_TOO_LARGE", self._head_too_large)

    @property
    def _head_too_large(self) -> str:
        return f"The request head is larger than {self.limits.max_header_bytes} bytes."

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_bytes = self._head_bytes = 0
        if self._deadline is None:
            self._arm(self.limits.header_timeout, "request head")

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self.limits.max_url_bytes:
            self._refuse(414, "URI_TOO_LONG", f"The URL is longer than {self.limits.max_url_bytes} bytes.")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._url_bytes + self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, "HEADERS_TOO_LARGE", self._head_too_large)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        expects_body = any(
            name == b"transfer-encoding" or (name == b"content-length" and value != b"0")
            for name, value in self.headers
        )
        if expects_body:
            self._arm(self.limits.body_timeout, "request body")
        else:
            self._disarm()
        self._reading_head = False
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _HeadWithBody(self.transport, self.cycle)

    def on_message_complete(self) -> None:
        self._disarm()
        self._reading_head, self._unparsed_bytes = True, 0
        super().on_message_complete()

    # --- shutdown ---------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """The server is stopping: an answer still being streamed (an event stream, which would
        never end by itself) is ended now, cleanly, with its last chunk; the application sees
        the client gone and stops. Any other answer finishes as uvicorn lets it."""
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete and cycle.chunked_encoding:
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.write(b"0\r\n\r\n")
            self.transport.close()
            return
        super().shutdown()

    # --- answers of the server's own ------------------------------------------------------------

    def _refuse(self, status: int, code: str, detail: str) -> None:
        self._refusal = (status, code, detail)
        raise _Refused(detail)

    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this when parsing fails: for a refusal of ours, or for malformed HTTP."""
        status, code, detail = self._refusal or (400, "MALFORMED_REQUEST", "The request is not valid HTTP/1.1.")
        self._answer(status, code, detail)

    def _answer(self, status: int, code: str, detail: str) -> None:
        self._disarm()
        refused(code)
        request_id = new_request_id()
        body = {**problem_document(status, detail, code=code), "request_id": request_id}
        content = json.dumps(body).encode()
        headers = {
            "content-type": PROBLEM_JSON,
            "content-length": str(len(content)),
            "connection": "close",
            HEADER.lower(): request_id,
            **{name.lower(): value for name, value in STANDARD_HEADERS.items()},
        }
        head = [STATUS_LINE[status]]
        head += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items()]
        self.transport.write(b"".join([*head, b"\r\n", content]))
        self.transport.close()


logger = logging.getLogger("uvicorn.error")

ACCEPT_PAUSE_SECONDS = 1.0
OUT_OF_RESOURCES_LOG_SECONDS = 10.0
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
FILES_KEPT_FOR_THE_REST = 256
"""File descriptors beyond MAX_CONNECTIONS that the process needs for itself (its database
pool, the auth server, logs): what `serve` asks the soft file limit to leave."""


class _PausingEventLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, but out of file descriptors it stops accepting for a second and says so
    once per interval. CPython 3.11's `_accept_connection` goes on calling accept() after
    EMFILE up to `backlog` times (uvicorn's: 2,048), logging a traceback and scheduling one more
    retry each time: measured, 534,065 tracebacks in 30 s at one CPU-second per second, while
    new clients waited in the backlog. This is that method with a `return` after the first
    failure, for the signatures of CPython 3.11-3.13."""

    _logged_at = -OUT_OF_RESOURCES_LOG_SECONDS
    _unlogged = 0

    def _accept_connection(self, protocol_factory, sock, sslcontext=None, server=None, backlog=100, *timeouts):
        for _ in range(backlog):
            try:
                conn, addr = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                self._out_of_resources(exc)
                self._remove_reader(sock.fileno())
                retry = (protocol_factory, sock, sslcontext, server, backlog, *timeouts)
                self.call_later(ACCEPT_PAUSE_SECONDS, self._start_serving, *retry)
                return
            accept = self._accept_connection2(protocol_factory, conn, {"peername": addr}, sslcontext, server, *timeouts)
            self.create_task(accept)

    def _out_of_resources(self, exc: OSError) -> None:
        if self.time() - self._logged_at < OUT_OF_RESOURCES_LOG_SECONDS:
            self._unlogged += 1
            return
        logger.warning(
            "accept() failed (%s): not accepting connections for %.0f s (%d more such failures not logged)",
            exc.strerror,
            ACCEPT_PAUSE_SECONDS,
            self._unlogged,
        )
        self._logged_at, self._unlogged = self.time(), 0


def pausing_loop() -> asyncio.AbstractEventLoop:
    """A new loop for uvicorn, which calls what `loop="module:name"` names to make one."""
    return _PausingEventLoop()


def _make_room_for(connections: int) -> None:
    """Raises the soft limit on open files towards what MAX_CONNECTIONS needs (up to the hard
    limit), and says so when it cannot: past the limit, accept() fails instead of a 503."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FILES_KEPT_FOR_THE_REST
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        if soft < wanted:
            logger.warning("MAX_CONNECTIONS=%d needs %d open files; the limit is %d", connections, wanted, soft)


class _GracefulServer(uvicorn.Server):
    """A second SIGINT (the process group's, then tox's own) still shuts down in order,
    application shutdown included, instead of forcing an exit that leaves it half done. And the
    shutdown starts as the signal arrives, not at uvicorn's next tenth-of-a-second tick: under
    `tox -e serve`, tox counts an environment still running a moment after Ctrl-C as
    interrupted twice, and fails it."""

    async def main_loop(self) -> None:
        self._exit_requested, self._loop = asyncio.Event(), asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn 0.54's, but for its tenth of a second for open connections to close, skipped
        when there are none."""
        logger.info("Shutting down")
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        if self.server_state.connections:
            for connection in list(self.server_state.connections):
                connection.shutdown()
            await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(self._wait_tasks_to_complete(), timeout=self.config.timeout_graceful_shutdown)
        except TimeoutError:
            logger.error("Cancel %s running task(s), timeout graceful shutdown exceeded", len(self.server_state.tasks))
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()

    def handle_exit(self, sig, frame) -> None:
        self.should_exit = True
        if hasattr(self, "_loop"):
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                self._loop.call_soon_threadsafe(self._exit_requested.set)


def serve(app, settings: Settings, host: str, port: int, *, workers: int = 1) -> None:
    """Runs `app` under uvicorn with the bounded protocol, on the asyncio loop; with several
    workers `app` is the import string of a factory each worker process calls."""
    protocol = functools.partial(BoundedHttpToolsProtocol, limits=ServerLimits.from_settings(settings))
    # The asyncio loop, not uvloop: uvloop serves more at 10 connections (GET 2,191 req/s against
    # 1,879), but under 100 saturating connections it starves some of them (mixed load p99 567 ms
    # against 101 ms, 1,339 req/s against 1,466). Measured with bench/ on 2026-11-24, after the
    # GC and pool fairness fixes.
    options = {
        "factory": isinstance(app, str),
        "workers": workers,
        "host": host,
        "port": port,
        "http": protocol,
        "loop": "service.server:pausing_loop",  # asyncio's, pausing when out of files
        "timeout_keep_alive": settings.keep_alive_seconds,
        "timeout_graceful_shutdown": settings.shutdown_timeout_seconds,  # then what still runs is cancelled
        # A worker that takes longer than uvicorn's 5 s to import and start is killed and started
        # again, forever, on a loaded machine (seen with 6-7 s starts on 2 busy cores).
        "timeout_worker_healthcheck": 30,
        "log_config": None,
        "access_log": False,
        "proxy_headers": True,
    }
    _make_room_for(settings.max_connections)
    if workers > 1:
        uvicorn.run(app, **options)  # a supervisor process and `workers` processes serving
    else:
        _GracefulServer(uvicorn.Config(app, **options)).run()
