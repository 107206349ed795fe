"""service/logs.py's Deferred: a request hands its log record over; a thread writes it."""

import io
import logging
import threading
import time

from service.logs import ACCESS_FIELDS, TEXT_FORMAT, Deferred, JsonFormatter, TextFormatter
from service.request_context import AccessRecord, RequestIdFilter, _request_id


def logger_writing_through(handler: Deferred, name: str) -> logging.Logger:
    """A logger of its own whose records go to `handler` only, as the service's do."""
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_records_are_written_in_order_by_another_thread_with_their_requests_ids():
    stream = io.StringIO()
    target = logging.StreamHandler(stream)
    target.setFormatter(TextFormatter())
    written_by = []
    format_in_target = target.format
    target.format = lambda record: written_by.append(threading.current_thread()) or format_in_target(record)
    handler = Deferred(target)
    logger = logger_writing_through(handler, "tests.deferred")
    try:
        token = _request_id.set("request-one")
        for number in range(500):
            logger.info("line %d of %s", number, "many")
        changing = {"state": "as logged"}
        logger.info("a dict %s", changing)
        changing["state"] = "changed after"
        _request_id.reset(token)
        logger.warning("outside a request")
    finally:
        handler.close()
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 502
    assert [line.split(" [request-one] ")[1] for line in lines[:500]] == [f"line {n} of many" for n in range(500)]
    assert lines[500].endswith("a dict {'state': 'as logged'}")
    assert "[-] outside a request" in lines[501]
    assert set(written_by) == {handler.thread} != {threading.current_thread()}


class StalledStream(io.StringIO):
    """A log reader that stops reading (a full pipe): writes wait until it reads again; the
    first write fails, as on a broken pipe."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = threading.Event()
        self.failed_once = False

    def write(self, text: str) -> int:
        if not self.failed_once:
            self.failed_once = True
            raise BrokenPipeError("the reader went away")
        self.reading.wait()
        return super().write(text)


def test_a_log_reader_that_stops_reading_costs_bounded_memory_and_loses_count_not_the_writer():
    stream = StalledStream()
    target = logging.StreamHandler(stream)
    target.setFormatter(TextFormatter())
    handler = Deferred(target, interval=0.01, max_queued=1_000)
    logger = logger_writing_through(handler, "tests.deferred.stalled")
    try:
        logger.info("lost with the broken pipe")
        deadline = time.monotonic() + 10
        while not stream.failed_once and time.monotonic() < deadline:  # written, and failed, alone
            time.sleep(0.01)
        for number in range(25_000):
            logger.info("line %d", number)
        waiting = len(handler.records)
        stream.reading.set()
    finally:
        handler.close()
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert waiting <= 1_000
    assert handler.thread.is_alive() is False and lines[-1].endswith("waited to be written")
    counts = [line.split(" [-] ")[1] for line in lines if line.endswith("waited to be written")]
    dropped = sum(int(count.split()[0]) for count in counts)  # counted as they were dropped
    written = [line for line in lines if not line.endswith("waited to be written")]
    assert len(written) + dropped == 25_000  # every line written or counted


def test_an_access_record_is_written_as_the_record_logging_itself_would_make():
    """The access log's own record (request_context.AccessRecord) and one made by `Logger.info`
    with the same values give the same line, in text and in JSON, whatever the second."""
    extensions = {"connexion_routing": {"operation_id": "getTask"}, "connexion_context": {"user": "ann"}}
    values = ("GET", "/api/ann/tasks/\u2028x", 200, 1.25)
    fields = dict(zip(ACCESS_FIELDS, (*values[:3], round(values[3], 1), "getTask", "ann"), strict=True))
    logger = logging.getLogger("tasks.access")
    text, as_json = TextFormatter(), JsonFormatter()
    for _ in range(3):  # the text formatter keeps each second's date and time: across a second, too
        ours = AccessRecord("rid-1", *values, extensions)
        standard = logger.makeRecord(logger.name, logging.INFO, "f", 1, "%s %s %d %.1fms", values, None, extra=fields)
        standard.__dict__.update(created=ours.created, msecs=ours.msecs, request_id="rid-1")
        assert (
            text.format(ours)
            == text.format(standard)
            == logging.Formatter(TEXT_FORMAT).format(standard).replace("\u2028", "\\u2028")
        )
        assert as_json.format(ours) == as_json.format(standard)
        time.sleep(0.6)
