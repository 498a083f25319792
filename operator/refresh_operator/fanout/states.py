"""What each instance holds: one GetState call per target, bounded, with the refreshes' breakers and auth.

Anti-entropy asks every healthy instance of a route for the versions it holds. The calls go through the
same channel pool, circuit breakers, TLS and call credentials as Refresh calls: an instance whose breaker
is open is not called (it is skipped, as one that does not answer), and an unreachable or silent one
counts against its breaker like a failed refresh. Each instance is asked once, within the policy's
per-call timeout and concurrency; there are no retries (the next pass asks again).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Sequence
from typing import Any

import grpc

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh_api.versions import VersionKey
from refresh_operator.fanout.breaker import BreakerRegistry
from refresh_operator.fanout.channels import ChannelPool
from refresh_operator.fanout.credentials import Metadata
from refresh_operator.fanout.policy import RefreshPolicy
from refresh_operator.fanout.targets import Target

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Held:
    """What one instance holds of one parameter."""

    key: VersionKey
    deleted: bool


InstanceState = dict[str, Held]
"""Parameter name → what the instance holds of it."""


def held_from_reply(reply: Any) -> InstanceState:
    """A GetStateResponse as the versions it names."""
    return {
        state.name: Held(
            key=VersionKey(state.last_modified.ToDatetime(tzinfo=datetime.UTC), int(state.version)),
            deleted=bool(state.deleted),
        )
        for state in reply.parameters
    }


async def get_states(
    targets: Sequence[Target],
    *,
    name_prefix: str,
    policy: RefreshPolicy,
    metadata: Metadata,
    channels: ChannelPool,
    breakers: BreakerRegistry,
) -> dict[str, InstanceState | None]:
    """Instance id → what it holds under `name_prefix`, or None when it was not (or could not be) asked."""
    slots = asyncio.Semaphore(policy.max_concurrency)
    request = pb.GetStateRequest(name_prefix=name_prefix)

    async def one(target: Target) -> tuple[str, InstanceState | None]:
        breaker = breakers.get(target.address)
        async with slots:
            if not breaker.allow():
                log.info("GetState of %s skipped: circuit breaker open", target.instance_id)
                return target.instance_id, None
            try:
                stub = channels.stub(target.address, policy.tls)
                reply: Any = await stub.GetState(request, timeout=policy.timeout_seconds, metadata=metadata)
            except grpc.aio.AioRpcError as error:
                code = error.code()
                breaker.record_error(code)
                log.info("GetState of %s failed (%s); skipped this pass", target.instance_id, code.name)
                return target.instance_id, None
            except OSError as error:
                breaker.release()
                log.info("GetState of %s failed (%s); skipped", target.instance_id, type(error).__name__)
                return target.instance_id, None
            except BaseException:
                breaker.release()
                raise
        breaker.record_success()
        return target.instance_id, held_from_reply(reply)

    if not targets:
        return {}
    return dict(await asyncio.gather(*(one(target) for target in targets)))
