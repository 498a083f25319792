"""Whether this replica is the active one of a kopf peering, for the loops kopf does not pause.

With `replicaCount > 1` kopf peering pauses the handlers of every replica but the one with the highest
priority. The background loops that run beside kopf (resync, retention) are not handlers, so they ask
here before each pass and skip it on a standby replica: Parameter Store is then read by one replica's
resync, and retention deletes from one place. The SQS consumer keeps running on every replica (competing
consumers: a message goes to one of them, and the ConfigRefresh it creates is rolled out by the active
replica's handler).

The rule is kopf's own (kopf._core.engines.peering): a peer is live until `lastseen + lifetime`; a replica
is paused when a live peer has a higher priority, or another live peer has the same one. This replica's
entry is found by its priority: the chart draws a random priority per replica, so a second live entry of
the same priority is a conflict, in which kopf pauses everyone.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

logger = logging.getLogger("refresh_operator.leadership")

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"
DEFAULT_LIFETIME_SECONDS = 60


@dataclasses.dataclass(frozen=True)
class Peering:
    """The peering this replica takes part in; `name` None means standalone (always active)."""

    name: str | None
    priority: int = 0
    namespace: str | None = None
    """The KopfPeering's namespace; None with `clusterwide` (a ClusterKopfPeering)."""
    clusterwide: bool = False

    @property
    def plural(self) -> str:
        return "clusterkopfpeerings" if self.clusterwide else "kopfpeerings"


def _parse_time(raw: object) -> datetime.datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def live_priorities(status: Mapping[str, Any], *, now: datetime.datetime) -> list[int]:
    """The priorities of the live peers in a peering object's status (kopf's `{identity: peer}` map)."""
    priorities = []
    for peer in status.values():
        if not isinstance(peer, Mapping):
            continue
        lastseen = _parse_time(peer.get("lastseen"))
        try:
            lifetime = int(peer.get("lifetime", DEFAULT_LIFETIME_SECONDS))
            priority = int(peer.get("priority", 0))
        except (TypeError, ValueError):
            continue
        if lastseen is None or lastseen + datetime.timedelta(seconds=lifetime) <= now:
            continue
        priorities.append(priority)
    return priorities


def is_active(status: Mapping[str, Any], *, priority: int, now: datetime.datetime) -> bool:
    """kopf's rule for this replica (of `priority`): exactly one live peer at this priority (itself) and
    none above it. Before this replica's first keep-alive it has no entry, so it is not active yet."""
    live = live_priorities(status, now=now)
    return live.count(priority) == 1 and not any(other > priority for other in live)


class Leadership:
    """Answers "am I the active replica?" from the peering object, read through `read_peering`."""

    def __init__(
        self,
        peering: Peering,
        *,
        read_peering: Callable[[Peering], Awaitable[Mapping[str, Any] | None]],
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._peering = peering
        self._read = read_peering
        self._clock = clock
        self._last: bool | None = None

    @property
    def standalone(self) -> bool:
        return self._peering.name is None

    async def is_active(self) -> bool:
        """True on a standalone operator; otherwise whether kopf's rule makes this replica the active one.
        When the peering object cannot be read the answer is False: a skipped pass is repaired by the next
        one, two replicas running it at once are not."""
        if self._peering.name is None:
            return True
        try:
            body = await self._read(self._peering)
        except Exception as error:  # any failure to read means "not sure": skip the pass
            logger.warning(
                "Reading the peering %s failed (%s); treating this replica as standby",
                self._peering.name,
                error,
            )
            active = False
        else:
            status = (body or {}).get("status") or {}
            active = is_active(
                status if isinstance(status, Mapping) else {},
                priority=self._peering.priority,
                now=self._clock(),
            )
        if active != self._last:
            logger.info(
                "This replica is %s for resync and retention (peering %s, priority %d)",
                "active" if active else "standby",
                self._peering.name,
                self._peering.priority,
            )
            self._last = active
        return active
