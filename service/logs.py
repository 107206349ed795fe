"""Logging: one line per record with its request id, as plain text (the default) or, with
LOG_FORMAT=json, one JSON object per line for a log pipeline.

What a request says (its path, a user id, a key's id from the auth server) reaches the logs, so
a record can never be made to look like two: the characters that end or reorder a line (C0 and
C1 controls, DEL, the Unicode line and paragraph separators, bidirectional overrides) are
escaped, as `\x0a` or `\u2028` in text and `\u2028` inside JSON strings."""

import atexit
import collections
import json
import logging
import re
import threading
import time

from service.request_context import AccessRecord, RequestIdFilter

ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "operation_id", "user_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_LINE_BREAKERS = r"\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE_IN_TEXT = re.compile(rf"[\x00-\x1f{_LINE_BREAKERS}]")
_UNSAFE_IN_JSON = re.compile(f"[{_LINE_BREAKERS}]")  # json.dumps escapes the C0 controls itself


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_escaped(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


class TextFormatter(logging.Formatter):
    """The plain text format; a traceback follows its record indented, so that no line of it
    can pass for a record of its own."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")  # the last second formatted, as text

    def format(self, record: logging.LogRecord) -> str:
        """An access record's line made directly: what `logging.Formatter.format` makes of it
        (no exception, no stack), without its checks of the format and the record per line."""
        if type(record) is AccessRecord:
            message = _UNSAFE_IN_TEXT.sub(_escaped, record.msg % record.args)
            return f"{self.formatTime(record)} {record.levelname} {record.name} [{record.request_id}] {message}"
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _UNSAFE_IN_TEXT.sub(_escaped, record.message)
        return super().formatMessage(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """`logging.Formatter`'s time, its date and time made once a second, not once a line."""
        second, text = self._second
        if int(record.created) != second:
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, text)
        return self.default_msec_format % (text, record.msecs)

    def formatException(self, ei) -> str:
        lines = super().formatException(ei).split("\n")
        return "\n".join("    " + _UNSAFE_IN_TEXT.sub(_escaped, line) for line in lines)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            **{field: getattr(record, field) for field in ACCESS_FIELDS if hasattr(record, field)},
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _UNSAFE_IN_JSON.sub(_json_escaped, json.dumps(entry, ensure_ascii=False))


BATCH = 1_000
"""Lines per write at most: a flood is written as it comes, not gathered whole first."""


class Deferred(logging.Handler):
    """Formats and writes records on a thread of its own, which wakes every `interval` seconds
    and writes what came in since, in one write: a request only appends its access log record
    (its request id already set, by the filter running here, in the request's context). Waking
    the thread for each record cost a thread switch and a hand-over of the GIL per request: over
    1,000 list requests (strace -c), 5,831 futex calls and 996 writes before, 263 and 49 now.
    A record whose arguments could change before the thread formats it has its message made
    here, as `logging.handlers.QueueHandler` does. At most `max_queued` records wait (a reader of
    the log that stops reading must not grow the process): past it they are counted, dropped, and
    the count is written when writing resumes."""

    def __init__(self, target: logging.Handler, *, interval: float = 0.05, max_queued: int = 20_000) -> None:
        super().__init__()
        self.target = target
        self.interval = interval
        self.records: collections.deque = collections.deque()  # append and popleft need no lock
        self.max_queued = max_queued
        self.dropped = 0
        self._dropped_lock = threading.Lock()  # the request's thread counts, the writer's resets
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._write, name="log writer", daemon=True)
        self.thread.start()
        atexit.register(self.close)

    def handle(self, record: logging.LogRecord) -> bool:
        """`Handler.handle` without its lock: `emit` only appends to a deque, which is thread-safe."""
        if self.filter(record):
            self.emit(record)
            return True
        return False

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args  # a tuple, or the one mapping given; an access record's are plain values
        if (
            args
            and type(record) is not AccessRecord
            and not (isinstance(args, tuple) and all(isinstance(arg, str | int | float) for arg in args))
        ):
            record.msg, record.args = record.getMessage(), None
        if len(self.records) >= self.max_queued:  # the log's reader has stopped reading: bounded
            with self._dropped_lock:
                self.dropped += 1
            return
        self.records.append(record)

    def _write(self) -> None:
        stopping = False
        while not stopping:
            stopping = self.stopping.wait(self.interval)
            while self.records or self.dropped:
                lines = []
                for _ in range(min(len(self.records), BATCH)):
                    record = self.records.popleft()
                    try:
                        lines.append(self.target.format(record))
                    except Exception:
                        self.target.handleError(record)
                if self.dropped:
                    with self._dropped_lock:
                        dropped, self.dropped = self.dropped, 0
                    message = f"{dropped} log records dropped: more than {self.max_queued} waited to be written"
                    warning = {"name": __name__, "msg": message, "levelname": "WARNING", "levelno": logging.WARNING}
                    lines.append(self.target.format(logging.makeLogRecord({**warning, "request_id": "-"})))
                self._put(lines)

    def _put(self, lines: list[str]) -> None:
        try:
            stream = self.target.stream
            stream.write("\n".join(lines) + "\n")
            stream.flush()
        except Exception:  # a closed or broken stream: those lines are lost, the thread goes on
            pass

    def close(self) -> None:
        """Writes what is queued, then stops the thread (at exit, or when logging is reconfigured)."""
        if self.thread.is_alive():
            self.stopping.set()
            self.thread.join(timeout=5)
        super().close()


def configure_logging(level: str, log_format: str = "text") -> None:
    # No record asks for its caller's file and line, thread or process (the logging HOWTO's
    # "Optimization"): not looking them up is a tenth of the cost of an access log line.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    stream = logging.StreamHandler()
    stream.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler = Deferred(stream)
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
