"""What one Refresh attempt's failure means: whether it is retried, and how an answer maps to a result.

Failed attempts are retried with exponential backoff and full jitter when the gRPC code says the instance
may answer later (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED); an answer that will not
change (INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED, ...) fails the target at once with the code
in the error. Apart from the engine (``fanout.engine``) because it is the engine's vocabulary, not its
scheduling.
"""

from __future__ import annotations

import asyncio

import grpc

from configrefresh.v1 import refresh_service_pb2 as pb
from refresh_operator.fanout.channels import MAX_RECONNECT_BACKOFF_SECONDS
from refresh_operator.fanout.targets import Result

RETRYABLE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
"""Codes after which the same call may succeed later."""

RESULTS = {
    pb.REFRESH_RESULT_APPLIED: Result.APPLIED,
    pb.REFRESH_RESULT_STALE: Result.STALE,
    pb.REFRESH_RESULT_REJECTED: Result.REJECTED,
}
"""An instance's answer as a target's result; any other answer fails the target (UNKNOWN)."""
MAX_DETAIL = 240
RECONNECT_SETTLE_SECONDS = MAX_RECONNECT_BACKOFF_SECONDS * 1.2 + 0.3
"""The least wait before retrying an UNAVAILABLE call: the channel's longest reconnect backoff with gRPC's
jitter, plus time to connect."""


def is_retryable(code: grpc.StatusCode) -> bool:
    """Whether a failed Refresh with this status code is worth another attempt."""
    return code in RETRYABLE_CODES


class AttemptFailed(Exception):
    """One attempt failed with ``code``; ``wait_at_least`` seconds before the next (a breaker's cool-down)."""

    def __init__(self, *, code: str, detail: str, retryable: bool, wait_at_least: float = 0.0) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.retryable = retryable
        self.wait_at_least = wait_at_least


def short(text: str | None) -> str:
    """An error detail on one line, cut to MAX_DETAIL characters."""
    text = (text or "").strip().replace("\n", " ")
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


CHANNEL_CLOSED_ERROR = "the call was cancelled by this operator: its channel was closed before the call ended"


def being_cancelled() -> bool:
    """Whether the running task has been asked to stop (``Task.cancel()``), rather than handed a
    CancelledError by something it awaited."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def channel_closed() -> AttemptFailed:
    """A call grpc.aio cancelled on this side although nothing stopped the rollout: its channel was closed
    under it (evicted from the pool, and still running when the eviction's grace ran out, as on a loaded
    operator). Not the instance's fault: retried, on a new channel."""
    return AttemptFailed(code="CANCELLED", detail=CHANNEL_CLOSED_ERROR, retryable=True)
