"""Logging: one line per record with its request id, as plain text (the default) or, with
LOG_FORMAT=json, one JSON object per line for a log pipeline."""

import json
import logging
import time

from service.request_context import RequestIdFilter

ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "operation_id", "user_id")


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
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    # No record asks for its caller's file and line, thread or process (the logging HOWTO's
    # "Optimization"): not looking them up is a tenth of the cost of an access log line.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
