"""Structured logs: one JSON object per line on stderr.

Why JSON lines: log pipelines on EKS (Fluent Bit, CloudWatch) parse them without regexes, and fields such
as `parameter`, `version` and `result` can be queried. Values are never logged: call sites pass names and
versions only, and the noisy AWS SDK loggers (which can print response bodies at DEBUG) are held at
WARNING whatever the service's level.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats a record and its `extra` fields as one JSON object."""

    def __init__(self, instance_id: str) -> None:
        super().__init__()
        self._instance_id = instance_id

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "instance_id": self._instance_id,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure(*, level: str, instance_id: str) -> None:
    """Send every log record to stderr as JSON lines.

    The JSON carries none of the caller's file, line, thread or process fields, so the logging module is
    told not to collect them: each refresh writes one line, on the event loop that also answers reads
    (the logging HOWTO's "Optimization" section names these switches).
    """
    logging._srcfile = None  # no stack walk per record (findCaller)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(instance_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "boto3", "urllib3", "kubernetes", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
