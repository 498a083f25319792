"""Instances that left during a rollout: a failed target is re-checked in Cloud Map before it counts.

A rollout picks its targets once, at its start. A pod terminated after that (podSync marks it unhealthy
and deregisters it) keeps being called at its closed port until every attempt fails. Before such a
failure counts against the rollout, the route's service is discovered once more, for the failed targets
only: one that Cloud Map no longer lists among the service's healthy instances matching the route's
scope (deregistered, or unhealthy when the service has a health check) is recorded as Gone, which is not
a failure. One still listed stays Failed; so does every failed target when the re-check itself fails
(nothing is excused on a guess).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence

from refresh_operator.fanout import CANCELLED_ERROR, DiscoveryError, Result, Target, TargetOutcome

logger = logging.getLogger("refresh_operator.rollouts")

GONE_MESSAGE = "deregistered during the rollout"
"""The start of a Gone target's `error`: Cloud Map no longer lists it as a healthy instance."""

Present = Callable[[], Awaitable[Sequence[Target]]]
"""The route's healthy instances now (a second discovery with the rollout's own query)."""


def rechecked(outcomes: Sequence[TargetOutcome]) -> list[TargetOutcome]:
    """The outcomes a re-check is about: Failed after the calls were made (not cancelled by a successor)."""
    return [o for o in outcomes if o.result is Result.FAILED and o.error != CANCELLED_ERROR]


def mark_gone(outcomes: Sequence[TargetOutcome], present: Collection[str]) -> list[TargetOutcome]:
    """`outcomes` with each re-checked one whose instance id is not in `present` turned Gone.

    An instance still present counts as there even at another address (a restarted pod with the same
    name): it did not get this version, so it stays Failed."""
    candidates = {o.target.instance_id for o in rechecked(outcomes)}
    marked: list[TargetOutcome] = []
    for outcome in outcomes:
        instance_id = outcome.target.instance_id
        if instance_id in candidates and instance_id not in present:
            last = f"; last error: {outcome.error}" if outcome.error else ""
            outcome = TargetOutcome(
                target=outcome.target,
                result=Result.GONE,
                version=outcome.version,
                attempts=outcome.attempts,
                error=f"{GONE_MESSAGE} (no longer a healthy Cloud Map instance){last}",
                acknowledged_at=None,
            )
        marked.append(outcome)
    return marked


async def settle_departures(
    outcomes: Sequence[TargetOutcome], *, present: Present, where: str
) -> list[TargetOutcome]:
    """Re-check the failed targets of one fan-out (see the module doc); returns the outcomes with the
    departed ones Gone. Cloud Map is asked only when something failed."""
    if not rechecked(outcomes):
        return list(outcomes)
    try:
        now = await present()
    except DiscoveryError as error:
        logger.warning("Failed targets of %s not re-checked (they stay Failed): %s", where, error)
        return list(outcomes)
    settled = mark_gone(outcomes, {target.instance_id for target in now})
    for before, after in zip(outcomes, settled, strict=True):
        if after.result is Result.GONE and before.result is not Result.GONE:
            logger.info(
                "Instance %s (%s) of %s left Cloud Map during the rollout: Gone, not Failed",
                after.target.instance_id,
                after.target.address,
                where,
            )
    return settled
