"""RefreshService over gRPC: validation, then the `Refresher`; the servicer itself stays thin.

Embeddable: `RefreshServicer(cache=..., refresher=..., instance_id=...)` can be added to any grpc.aio
server with `refresh_service_pb2_grpc.add_RefreshServiceServicer_to_server` (see docs/config-service.md).
Validation errors are INVALID_ARGUMENT with a message naming the field; a call before the bootstrap
completed or after shutdown began is UNAVAILABLE. With `accept_values=False` (an instance whose refresh
channel is plaintext and unauthenticated) a PAYLOAD_MODE_VALUE refresh is PERMISSION_DENIED: the caller can
then only make the instance re-read from Parameter Store, never hand it a value. Authentication is an
interceptor (auth.py), not here.
"""

from __future__ import annotations

from typing import Any

import grpc

from config_service.cache import ConfigCache
from config_service.convert import (
    datetime_to_timestamp,
    entry_to_state,
    timestamp_to_datetime,
    value_type_from_proto,
)
from config_service.errors import InvalidArgument, PermissionDenied, ServiceError, Unavailable, grpc_status
from config_service.lifecycle import Lifecycle
from config_service.metrics import Metrics
from config_service.refresher import Change, Operation, PayloadMode, Refresher, Result
from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc

_RESULTS = {
    Result.APPLIED: pb.REFRESH_RESULT_APPLIED,
    Result.STALE: pb.REFRESH_RESULT_STALE,
    Result.REJECTED: pb.REFRESH_RESULT_REJECTED,
}


def change_from_request(request: pb.RefreshRequest) -> Change:
    """Validate a RefreshRequest (except the prefix rule, which the Refresher checks)."""
    if not request.parameter_name:
        raise InvalidArgument("parameter_name", "must not be empty")
    if request.operation == pb.OPERATION_UPSERT:
        operation = Operation.UPSERT
    elif request.operation == pb.OPERATION_DELETE:
        operation = Operation.DELETE
    else:
        raise InvalidArgument("operation", "must be OPERATION_UPSERT or OPERATION_DELETE")
    if request.payload_mode in (pb.PAYLOAD_MODE_UNSPECIFIED, pb.PAYLOAD_MODE_VALUE):
        mode = PayloadMode.VALUE
    elif request.payload_mode == pb.PAYLOAD_MODE_INVALIDATE:
        mode = PayloadMode.INVALIDATE
    else:
        raise InvalidArgument("payload_mode", "must be PAYLOAD_MODE_VALUE or PAYLOAD_MODE_INVALIDATE")
    if operation is Operation.UPSERT and request.version < 1:
        raise InvalidArgument("version", "must be at least 1 for an UPSERT")
    if request.version < 0:
        raise InvalidArgument("version", "must not be negative")
    if operation is Operation.UPSERT and mode is PayloadMode.VALUE and not request.value:
        raise InvalidArgument("value", "is required for an UPSERT in PAYLOAD_MODE_VALUE")
    return Change(
        name=request.parameter_name,
        operation=operation,
        mode=mode,
        version=request.version,
        last_modified=timestamp_to_datetime(request.last_modified),
        value=request.value if mode is PayloadMode.VALUE else "",
        value_type=value_type_from_proto(request.value_type),
        refresh_id=request.refresh_id,
    )


class RefreshServicer(pb_grpc.RefreshServiceServicer):
    """Refresh and GetState for one cache."""

    def __init__(
        self,
        *,
        cache: ConfigCache,
        refresher: Refresher,
        instance_id: str,
        lifecycle: Lifecycle | None = None,
        metrics: Metrics | None = None,
        accept_values: bool = True,
    ) -> None:
        self._cache = cache
        self._accept_values = accept_values
        self._refresher = refresher
        self._instance_id = instance_id
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._counters: dict[tuple[str, str], Any] = {}  # labelled children, looked up once each

    async def Refresh(
        self,
        request: pb.RefreshRequest,
        context: grpc.aio.ServicerContext[pb.RefreshRequest, pb.RefreshResponse],
    ) -> pb.RefreshResponse:
        mode = "invalidate" if request.payload_mode == pb.PAYLOAD_MODE_INVALIDATE else "value"
        try:
            if self._lifecycle is not None and not self._lifecycle.is_serving:
                raise Unavailable(f"instance is {self._lifecycle.phase.value}")
            if mode == "value" and not self._accept_values:
                raise PermissionDenied(
                    "this instance accepts only PAYLOAD_MODE_INVALIDATE refreshes (refresh_accept_values is "
                    "off): it re-reads the value from Parameter Store itself"
                )
            change = change_from_request(request)
            if self._metrics is None:
                outcome = await self._refresher.refresh(change)
            else:
                with self._metrics.refreshes_in_flight.track_inprogress():
                    outcome = await self._refresher.refresh(change)
        except ServiceError as error:
            label = (
                "invalid"
                if isinstance(error, InvalidArgument)
                else "rejected"
                if isinstance(error, PermissionDenied)
                else "unavailable"
            )
            self._count(label, mode)
            await context.abort(grpc_status(error), str(error))
            raise  # unreachable: abort raises
        self._count(outcome.result.value, mode)
        return pb.RefreshResponse(
            result=_RESULTS[outcome.result],
            applied_version=outcome.applied_version,
            instance_id=self._instance_id,
            message=outcome.message,
        )

    async def GetState(
        self,
        request: pb.GetStateRequest,
        context: grpc.aio.ServicerContext[pb.GetStateRequest, pb.GetStateResponse],
    ) -> pb.GetStateResponse:
        snapshot = self._cache.snapshot
        names = [name for name in snapshot.sorted_names() if name.startswith(request.name_prefix)]
        parameters = []
        for name in names:
            entry = snapshot.raw(name)
            if entry is not None:
                parameters.append(entry_to_state(entry))
        return pb.GetStateResponse(
            instance_id=self._instance_id,
            started_at=datetime_to_timestamp(self._lifecycle.started_at) if self._lifecycle else None,
            parameters=parameters,
        )

    def _count(self, result: str, mode: str) -> None:
        if self._metrics is None:
            return
        counter = self._counters.get((result, mode))
        if counter is None:
            counter = self._counters[(result, mode)] = self._metrics.refreshes.labels(
                result=result, mode=mode
            )
        counter.inc()
