"""service/logs.py's Deferred: a request hands its log record over; a thread writes it."""

import io
import logging
import threading

from service.logs import Deferred, TextFormatter
from service.request_context import RequestIdFilter, _request_id


def test_records_are_written_in_order_by_another_thread_with_their_requests_ids():
    stream = io.StringIO()
    target = logging.StreamHandler(stream)
    target.setFormatter(TextFormatter())
    written_by = []
    format_in_target = target.format
    target.format = lambda record: written_by.append(threading.current_thread()) or format_in_target(record)
    handler = Deferred(target)
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("tests.deferred")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
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
