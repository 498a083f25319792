"""One log pipeline parses both programs: a JSON line of config-service and one of the operator (`--log-format
json`), each produced by the program's real logging set-up, carry the same fields with the same types."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kopf._core.actions.loggers import ObjectLogger

from config_service import logs as service_logs
from refresh_operator.cli import QUIET_LIBRARIES, configure_logging, parse_args
from refresh_operator.logs import LogFormat
from refresh_operator.settings import load_settings

pytestmark = pytest.mark.unit

POD = "config-refresh-operator-5c8d-xyz12"
COMMON = {"time": str, "level": str, "logger": str, "message": str, "instance_id": str}


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in (*QUIET_LIBRARIES, "botocore", "boto3", "urllib3", "kubernetes", "grpc"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def one_line(err: str) -> dict[str, Any]:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    parsed = json.loads(lines[0])
    assert isinstance(parsed, dict)
    for key, kind in COMMON.items():
        assert isinstance(parsed[key], kind), (key, parsed)
    return parsed


def test_config_service_line(capsys: pytest.CaptureFixture[str]) -> None:
    service_logs.configure(level="info", instance_id="orders-7d9f-abcde")
    logging.getLogger("config_service.refresher").info(
        "refresh applied", extra={"parameter": "/config-service/acme/orders/db_url", "version": 4}
    )
    line = one_line(capsys.readouterr().err)
    assert line["level"] == "INFO"
    assert line["instance_id"] == "orders-7d9f-abcde"
    assert (line["parameter"], line["version"]) == ("/config-service/acme/orders/db_url", 4)


def test_operator_line_has_the_same_fields(capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(
        {"CONFIG_REFRESH_QUEUE_URL": "http://127.0.0.1/q", "AWS_REGION": "us-east-1", "POD_ID": POD}
    )
    args = parse_args(["-n", "apps", "--log-format", "json"])
    configure_logging(
        verbose=args.verbose, quiet=args.quiet, log_format=args.log_format, instance_id=settings.pod_id
    )
    logging.getLogger("refresh_operator.consumer").warning(
        "event rejected", extra={"parameter": "/config-service/acme/orders/db_url", "version": 4}
    )
    line = one_line(capsys.readouterr().err)
    assert line["level"] == "WARNING"
    assert line["logger"] == "refresh_operator.consumer"
    assert line["instance_id"] == POD
    assert (line["parameter"], line["version"]) == ("/config-service/acme/orders/db_url", 4)
    assert line["time"].endswith("+00:00")


def test_a_kopf_object_record_names_the_object_and_nothing_internal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(verbose=False, quiet=False, log_format=LogFormat.JSON)
    body: kopf.RawBody = {
        "apiVersion": "configrefresh.io/v1alpha1",
        "kind": "ConfigRefresh",
        "metadata": {"name": "orders-1a2b-v4-3c4d", "namespace": "apps", "uid": "0f1e"},
    }
    # kopf's own per-object logger (the `logger` a handler receives), local: no Kubernetes Event posted.
    ObjectLogger(body=kopf.Body(body), settings=kopf.OperatorSettings()).info(
        "Handler 'refresh' succeeded.", extra={"k8s_skip": True}
    )
    line = one_line(capsys.readouterr().err)
    assert line["logger"] == "kopf.objects"
    assert line["object"] == {
        "apiVersion": "configrefresh.io/v1alpha1",
        "kind": "ConfigRefresh",
        "name": "orders-1a2b-v4-3c4d",
        "namespace": "apps",
        "uid": "0f1e",
    }
    assert not {"settings", "k8s_ref", "k8s_skip"} & set(line)


def test_text_stays_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args(["-n", "apps"])
    assert args.log_format is LogFormat.TEXT
    configure_logging(verbose=args.verbose, quiet=args.quiet, log_format=args.log_format)
    logging.getLogger("refresh_operator.consumer").warning("event rejected")
    err = capsys.readouterr().err
    assert "[WARNING ] event rejected" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err)
