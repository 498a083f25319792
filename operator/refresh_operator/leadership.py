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

A namespaced operator peers in every namespace it watches (one KopfPeering each), and kopf pauses the
whole operator when any of them shows a conflict: the replica is active only when it is active in all of
them. A cluster-wide operator has one ClusterKopfPeering.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
    mandatory: bool = True
    """`--peering NAME` makes peering mandatory. Without it kopf looks for a peering object named "default"
    and runs without peering when there is none: then an absent object means active, as kopf behaves."""

    @property
    def cluster_scoped(self) -> bool:
        return self.clusterwide or self.namespace is None

    @property
    def plural(self) -> str:
        return "clusterkopfpeerings" if self.cluster_scoped else "kopfpeerings"


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


def peerings_for(
    *,
    name: str,
    priority: int,
    standalone: bool,
    clusterwide: bool,
    mandatory: bool,
    namespaces: Sequence[str] | None,
) -> list[Peering]:
    """The peering objects kopf uses with these settings (kopf's `settings.peering`): none standalone,
    the ClusterKopfPeering cluster-wide, otherwise one KopfPeering of that name per watched namespace."""
    if standalone:
        return []
    if clusterwide or namespaces is None:
        return [Peering(name=name, priority=priority, clusterwide=True, mandatory=mandatory)]
    return [
        Peering(name=name, priority=priority, namespace=namespace, mandatory=mandatory)
        for namespace in dict.fromkeys(namespaces)
    ]


class Leadership:
    """Answers "am I the active replica?" from the peering object(s), read through `read_peering`."""

    def __init__(
        self,
        peerings: Peering | Sequence[Peering],
        *,
        read_peering: Callable[[Peering], Awaitable[Mapping[str, Any] | None]],
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        chosen = [peerings] if isinstance(peerings, Peering) else list(peerings)
        self._peerings = [peering for peering in chosen if peering.name is not None]
        self._read = read_peering
        self._clock = clock
        self._last: bool | None = None

    @property
    def standalone(self) -> bool:
        return not self._peerings

    async def is_active(self) -> bool:
        """True on a standalone operator; otherwise whether kopf's rule makes this replica the active one
        in every peering object it takes part in. When a peering object cannot be read the answer is
        False: a skipped pass is repaired by the next one, two replicas running it at once are not."""
        if not self._peerings:
            return True
        active = True
        for peering in self._peerings:
            if not await self._active_in(peering):
                active = False
                break
        if active != self._last:
            first = self._peerings[0]
            logger.info(
                "This replica is now %s for resync and retention (peering %s, priority %d)",
                "active" if active else "standby",
                first.name,
                first.priority,
            )
            self._last = active
        return active

    async def _active_in(self, peering: Peering) -> bool:
        where = "cluster-wide" if peering.cluster_scoped else f"in {peering.namespace}"
        try:
            body = await self._read(peering)
        except Exception as error:  # any failure to read means "not sure": skip the pass
            logger.warning(
                "Reading the peering %s %s failed (%s); treating this replica as standby",
                peering.name,
                where,
                error,
            )
            return False
        if body is None:
            if peering.mandatory:
                logger.warning(
                    "The peering %s %s does not exist; treating this replica as standby", peering.name, where
                )
                return False
            return True  # kopf runs without peering when the optional object is absent
        status = body.get("status") or {}
        return is_active(
            status if isinstance(status, Mapping) else {},
            priority=peering.priority,
            now=self._clock(),
        )
