"""The operator's log formats: kopf's text lines, or JSON lines with config-service's fields.

Why the same fields as config-service (config_service/logs.py): one log pipeline (Fluent Bit, CloudWatch
Logs Insights) parses both programs: `time` (ISO 8601, UTC, milliseconds), `level` (`INFO`, `WARNING`, ...),
`logger`, `message`, `instance_id` (the pod name), the call site's `extra` fields, and `exception` when
there is one. kopf's own `--log-format=json` (python-json-logger) names them `timestamp` and `severity`
instead, so the operator formats kopf's records itself. A record logged about a Kubernetes object (kopf's
per-object logger) also carries `object`: `{apiVersion, kind, name, namespace, uid}`.
"""

from __future__ import annotations

import enum
import logging
import socket

import kopf

from config_service.logs import JsonFormatter


class LogFormat(enum.StrEnum):
    """`--log-format`: `text` is kopf's default line format, `json` one object per line."""

    TEXT = "text"
    JSON = "json"


KOPF_RECORD_FIELDS = frozenset({"k8s_skip", "k8s_ref", "settings"})
"""Attributes kopf's per-object logger adds to a record: `k8s_ref` becomes `object`, the rest is internal."""


class OperatorJsonFormatter(JsonFormatter):
    """config-service's JSON line, plus the Kubernetes object a kopf record is about."""

    def format(self, record: logging.LogRecord) -> str:
        ref = getattr(record, "k8s_ref", None)
        fields = {key: value for key, value in vars(record).items() if key not in KOPF_RECORD_FIELDS}
        copy = logging.makeLogRecord(fields)
        if isinstance(ref, dict):
            copy.object = dict(ref)
        return super().format(copy)


def configure(
    *,
    log_format: LogFormat,
    verbose: bool,
    quiet: bool,
    quiet_libraries: tuple[str, ...],
    instance_id: str | None = None,
) -> None:
    """kopf's logging set-up (levels, its handler on the root logger), with our formatter for JSON.

    `instance_id` names this replica in every JSON line (the settings' `pod_id`; default: the hostname).
    """
    kopf.configure(verbose=verbose, quiet=quiet)
    if log_format is LogFormat.JSON:
        formatter = OperatorJsonFormatter(instance_id or socket.gethostname())
        for handler in logging.getLogger().handlers:
            handler.setFormatter(formatter)
    for name in quiet_libraries:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)
