"""Domain errors and their one mapping to gRPC status codes.

Why: servicers stay thin. Domain code raises these; `grpc_status` is the only place that decides which
status code a client sees. Messages name the request field at fault and never contain a value.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Base of errors a client is told about."""


class InvalidArgument(ServiceError):
    """A request field is missing or malformed; `field` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(ServiceError):
    """The instance holds no such parameter (or holds a tombstone for it)."""


class Unavailable(ServiceError):
    """The instance is bootstrapping or shutting down."""


class PermissionDenied(ServiceError):
    """The caller may not have this answer (a SecureString for an unauthenticated caller)."""


_CODES: dict[type[ServiceError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}


def grpc_status(error: ServiceError) -> grpc.StatusCode:
    """The status code a client gets for `error`."""
    for kind, code in _CODES.items():
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL
