"""From the operator's words to the fan-out's: a route and a parameter version become a ``RefreshPolicy``
and a ``RefreshRequest``; an instance entry recorded in status becomes a ``TargetOutcome`` again.

The one place that knows the protobuf enums of the refresh channel and the policy decisions taken per
rollout: which payload mode a parameter travels in, which TLS files and which token a route's calls use.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh_api.versions import Operation
from refresh_operator.fanout.policy import RefreshPolicy, TlsSettings
from refresh_operator.fanout.targets import Result, Target, TargetOutcome
from refresh_operator.parameter_store import ParameterSnapshot
from refresh_operator.routes import RefreshSpec, Route

VALUE_TYPES = {
    "String": pb.VALUE_TYPE_STRING,
    "StringList": pb.VALUE_TYPE_STRING_LIST,
    "SecureString": pb.VALUE_TYPE_SECURE_STRING,
}
"""Parameter Store's value types on the wire; an unknown type travels as a String."""


@dataclasses.dataclass(frozen=True)
class OperatorCredentials:
    """The operator's own TLS and token files (mounted in its pod), shared by every route."""

    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    token_file: str | None = None


def policy_for(refresh: RefreshSpec, credentials: OperatorCredentials) -> RefreshPolicy:
    """How the instances of a route with this `spec.refresh` are called: limits, TLS and token."""
    tls = None
    if refresh.tls_enabled:
        tls = TlsSettings(
            ca_file=credentials.tls_ca_file,
            cert_file=credentials.tls_cert_file,
            key_file=credentials.tls_key_file,
            server_name=refresh.tls_server_name,
            ca_bundle=refresh.ca_bundle,
        )
    token_file = None
    audience = None
    if refresh.auth_type == "bearerToken" and credentials.token_file:
        token_file = credentials.token_file
    elif refresh.auth_type == "serviceAccountToken":
        audience = refresh.audience
    return RefreshPolicy(
        timeout_seconds=refresh.timeout_seconds,
        max_concurrency=refresh.max_concurrency,
        max_attempts=refresh.max_attempts,
        deadline_seconds=refresh.deadline_seconds,
        tls=tls,
        token_file=token_file,
        token_audience=audience,
        allow_plaintext=refresh.insecure_allow_plaintext,
    )


def effective_payload(route: Route, value_type: str) -> str:
    """The payload mode of one parameter on this route: a SecureString never travels as a value over a
    plaintext channel (see RefreshSpec.secure_strings_invalidated); instances re-read it instead."""
    if value_type == "SecureString" and route.refresh.secure_strings_invalidated:
        return "invalidate"
    return route.refresh.payload


def _timestamp(moment: datetime.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(datetime.UTC))
    return stamp


def build_request(
    *, refresh_id: str, snapshot: ParameterSnapshot, payload: str, scope: Mapping[str, str]
) -> pb.RefreshRequest:
    """The Refresh call of one rollout; the value goes along only in payload mode `value`."""
    delete = snapshot.operation is Operation.DELETE
    request = pb.RefreshRequest(
        refresh_id=refresh_id,
        parameter_name=snapshot.name,
        version=snapshot.version,
        last_modified=_timestamp(snapshot.last_modified),
        operation=pb.OPERATION_DELETE if delete else pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_VALUE if payload == "value" else pb.PAYLOAD_MODE_INVALIDATE,
        value_type=VALUE_TYPES.get(snapshot.value_type, pb.VALUE_TYPE_STRING),
        scope=dict(scope),
        committed_at=_timestamp(snapshot.last_modified),
    )
    if payload == "value" and not delete and snapshot.value is not None:
        request.value = snapshot.value
    return request


def recorded_outcome(target: Target, entry: Mapping[str, Any]) -> TargetOutcome:
    """An outcome as `status.instances[]` recorded it (no acknowledgment time: it is not this run's)."""
    return TargetOutcome(
        target=target,
        result=Result(str(entry.get("result"))),
        version=int(entry.get("version") or 0),
        attempts=int(entry.get("attempts") or 0),
        error=entry.get("error"),
        acknowledged_at=None,
    )
