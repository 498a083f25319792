"""Waiting until written versions are live: each one's ConfigRefresh, found by label, must finish.

For every (parameter, version) written, the routes that claim the parameter are read from the
ConfigRoutes in the namespace (same prefix + scopePattern rule as the operator); one ConfigRefresh per
route is expected, labelled `configrefresh.io/parameter-hash` and `configrefresh.io/version`. A parameter
no route claims has no fleet to wait for and is reported as such. A rollout Superseded by a newer one is
followed to the newer one. One list call per poll covers every target.

Parameter versions restart at 1 after a delete and re-create, so a label match alone could find the
rollout of an earlier life of the parameter. The objects that already exist before the write are listed
first (`existing_names`) and ignored while waiting: nothing created before the write can be its rollout.

Outcome: OK when all are Succeeded (or superseded by a success), ROLLOUT_FAILED when any ended
PartiallyFailed or Failed, WAIT_TIMEOUT when the deadline passes first.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from configctl.exitcodes import ConfigctlError, ExitCode
from configctl.kube import Kube, routes_for
from configctl.rollouts import FAILED_PHASES, Rollout, from_object
from configrefresh_api.labels import LABEL_PARAMETER_HASH
from configrefresh_api.naming import parameter_hash

_SELECTOR_LIMIT = 40


@dataclasses.dataclass(frozen=True)
class Target:
    """A parameter version to wait for."""

    name: str
    version: int


@dataclasses.dataclass(frozen=True)
class Expectation:
    target: Target
    route: str | None
    """The route expected to roll it out; None when routes could not be read (any route will do)."""
    object_name: str | None = None
    """A specific ConfigRefresh (a manual refresh just created); None to find it by labels."""


@dataclasses.dataclass(frozen=True)
class Tracked:
    expectation: Expectation
    rollout: Rollout | None
    """The ConfigRefresh that decides (the superseding one when followed); None while none exists."""

    @property
    def final(self) -> bool:
        return self.rollout is not None and self.rollout.final


@dataclasses.dataclass(frozen=True)
class WaitOutcome:
    code: ExitCode
    tracked: tuple[Tracked, ...]
    uncovered: tuple[Target, ...]


def expectations(kube: Kube, targets: Sequence[Target]) -> tuple[list[Expectation], list[Target]]:
    """One expectation per (target, claiming route); targets no route claims are returned apart."""
    try:
        routes = kube.list_routes()
    except ConfigctlError:
        # No permission to read routes: expect one ConfigRefresh per target, from whichever route.
        return [Expectation(target, None) for target in targets], []
    expected: list[Expectation] = []
    uncovered: list[Target] = []
    for target in targets:
        claimed = routes_for(routes, target.name)
        if not claimed:
            uncovered.append(target)
        expected.extend(Expectation(target, route) for route, _ in claimed)
    return expected, uncovered


def _list(kube: Kube, hashes: set[str]) -> list[Rollout]:
    if not hashes:
        return []
    if len(hashes) <= _SELECTOR_LIMIT:
        selector = f"{LABEL_PARAMETER_HASH} in ({','.join(sorted(hashes))})"
        return [from_object(o) for o in kube.list_refreshes(label_selector=selector)]
    return [r for r in (from_object(o) for o in kube.list_refreshes()) if r.parameter_hash in hashes]


def existing_names(kube: Kube, parameter_names: Sequence[str]) -> frozenset[str]:
    """Names of the ConfigRefreshes that exist now for these parameters (to ignore after writing)."""
    return frozenset(r.object_name for r in _list(kube, {parameter_hash(n) for n in parameter_names}))


def _resolve(expectation: Expectation, rollouts: list[Rollout], ignore: frozenset[str]) -> Rollout | None:
    target = expectation.target
    wanted_hash = parameter_hash(target.name)
    candidates = [
        r
        for r in rollouts
        if r.object_name not in ignore
        and r.parameter_hash == wanted_hash
        and r.version == target.version
        and (expectation.route is None or r.route == expectation.route)
        and (expectation.object_name is None or r.object_name == expectation.object_name)
    ]
    if not candidates:
        return None
    # Prefer a finished one, then the newest.
    candidates.sort(key=lambda r: (r.final, r.created, r.object_name), reverse=True)
    chosen = candidates[0]
    by_name = {r.object_name: r for r in rollouts}
    seen = {chosen.object_name}
    while chosen.phase == "Superseded" and chosen.superseded_by in by_name:
        chosen = by_name[chosen.superseded_by]
        if chosen.object_name in seen:
            break
        seen.add(chosen.object_name)
    return chosen


def snapshot(
    kube: Kube, expected: Sequence[Expectation], ignore: frozenset[str] = frozenset()
) -> tuple[Tracked, ...]:
    rollouts = _list(kube, {parameter_hash(e.target.name) for e in expected})
    return tuple(Tracked(e, _resolve(e, rollouts, ignore)) for e in expected)


def outcome_code(tracked: Sequence[Tracked]) -> ExitCode:
    if any(t.rollout is not None and t.rollout.phase in FAILED_PHASES for t in tracked):
        return ExitCode.ROLLOUT_FAILED
    return ExitCode.OK


def wait_for(
    kube: Kube,
    expected: Sequence[Expectation],
    *,
    timeout: float,
    poll_interval: float = 0.5,
    ignore: frozenset[str] = frozenset(),
    on_progress: Callable[[tuple[Tracked, ...]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[ExitCode, tuple[Tracked, ...]]:
    """Poll until every expectation is final or the timeout passes.

    An API error during polling (an API server restarting, a dropped connection) is retried until the
    deadline; only if no poll ever succeeded is it raised (KUBE_ERROR).
    """
    deadline = clock() + timeout
    tracked: tuple[Tracked, ...] | None = None
    while True:
        try:
            tracked = snapshot(kube, expected, ignore)
        except ConfigctlError:
            if tracked is None and clock() >= deadline:
                raise
        if tracked is not None:
            if on_progress is not None:
                on_progress(tracked)
            if all(t.final for t in tracked):
                return outcome_code(tracked), tracked
        if clock() >= deadline:
            assert tracked is not None
            return ExitCode.WAIT_TIMEOUT, tracked
        sleep(min(poll_interval, max(0.0, deadline - clock())))
