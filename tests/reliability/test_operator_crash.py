"""Fault 1: the operator SIGKILLed in each phase of a change and restarted: zero changes lost.

Each round writes a new key and kills the operator in one phase of that change, chosen beforehand and
reached by waiting for the state that marks it (never by a timed guess):

- "before the event was received": killed first, the write comes while it is down;
- "reading Parameter Store": GetParameter is throttled a few times (botocore backs off between its
  attempts), killed once the operator's first attempt was throttled;
- "during the fan-out": the route rolls out in waves, killed during the bake after the first wave, while
  some instances hold the change and others do not;
- "after the fan-out": killed once the rollout is Succeeded.

Which phase the kill actually hit is then read from the frozen state (no operator runs): whether the
ConfigRefresh exists, how many instances hold the version, whether the read was under way. A round
whose kill landed elsewhere (the read finished first, say) is recorded as what it hit and retried with
a new key, so every phase above is hit and asserted. After each kill the operator is restarted and the
round waits until the key is Succeeded on every instance and the queue is empty, so the next round's
state belongs to its own key. At the end every key is on every instance at its version, with exactly
one ConfigRefresh each, Succeeded.

A message held by an operator that is killed comes back after the visibility timeout; one held by three
operators in a row is moved to the dead-letter queue by SQS (maxReceiveCount 3, as deployed): that is the
queue's guard against a message that itself kills the operator. The change is then recovered by the
route's resync pass, which reads Parameter Store itself; the test names which keys took that path.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from devstack.stack.kube import apply, get_json, route_object, wait_for
from tests.reliability.checks import VersionWatch, assert_converged

RESYNC_SECONDS = 20

# A killed operator cannot hand back a message it holds: it comes back after the visibility timeout.
FAST_REDELIVERY = {"CONFIG_REFRESH_VISIBILITY_EXTENSION_SECONDS": "6"}

BEFORE_RECEIVE = "before the event was received"
READING = "reading Parameter Store, before the object"
CREATED = "object created, before the fan-out"
FAN_OUT = "during the fan-out"
AFTER = "after the fan-out"
PHASES = [BEFORE_RECEIVE, READING, FAN_OUT, AFTER]  # the ones each run must hit (docs/reliability.md)
ATTEMPTS_PER_PHASE = 3

# Fewer than botocore's 5 attempts: an operator left alone still reads the parameter, after backing off
# for several seconds in all (random waits of up to 1, 2, 4 and 8 s between the attempts).
READ_THROTTLES = 4


def _route_in_waves(stack: Any, *, bake_seconds: int, **refresh: Any) -> None:
    """The route rolls out to a quarter of the fleet, bakes, then to the rest: a fan-out with a middle."""
    body = route_object(stack.route, local_aws=stack.local_aws, prefix=stack.local_aws.prefix, **refresh)
    body["spec"]["resync"] = {"intervalSeconds": RESYNC_SECONDS}
    body["spec"]["rollout"] = {"waves": ["25%"], "bakeSeconds": bake_seconds}
    apply(stack.control_plane, stack.namespace, body)

    def indexed() -> bool:
        route = get_json(stack.control_plane, "configroute", stack.route, "-n", stack.namespace)
        return bool((route.get("status") or {}).get("observedGeneration") == route["metadata"]["generation"])

    wait_for(indexed, timeout=30, what="the route in waves indexed")


def _held(stack: Any, name: str) -> int:
    return sum(1 for _, version in stack.values(name) if version == 1)


def _throttles_left(stack: Any) -> int:
    return sum(int(fault["remaining"]) for fault in stack.local_aws.pending_faults())


def _kill_in(stack: Any, name: str, target: str, value: str) -> str:
    """Write `name` v1, kill the operator in `target`, and return the phase the frozen state shows."""
    size = len(stack.fleet)
    written_after_kill = target == BEFORE_RECEIVE
    if written_after_kill:
        stack.operator.kill()
        stack.put(name, value)
    else:
        if target == READING:
            stack.local_aws.inject_fault(
                "ssm:GetParameter", error="ThrottlingException", count=READ_THROTTLES
            )
        stack.put(name, value)
        if target == READING:
            wait_for(
                lambda: _throttles_left(stack) < READ_THROTTLES,
                timeout=30,
                interval=0.02,
                what="a throttled read",
            )
        elif target == FAN_OUT:
            # killed as soon as an instance holds it; if that poll came too late (every instance does),
            # the round is recorded as what it hit and retried
            wait_for(lambda: _held(stack, name) > 0, timeout=60, what="the first wave applied")
        else:
            stack.wait_phase(name, 1, {"Succeeded"}, timeout=120)
        stack.operator.kill()
    throttled = READ_THROTTLES - _throttles_left(stack) if target == READING else 0
    stack.local_aws.clear_faults()
    # No operator runs: the object, the fleet and the read's progress are as the kill left them.
    if not stack.refreshes_of(name):
        if written_after_kill:
            return BEFORE_RECEIVE
        return READING if throttled > 0 else "before the object (no read seen)"
    held = _held(stack, name)
    return CREATED if held == 0 else FAN_OUT if held < size else AFTER


def _crash_rounds(stack: Any, watch: VersionWatch, targets: list[str]) -> None:
    names: list[str] = []
    kills: list[tuple[str, str, str]] = []  # (key, phase aimed at, phase hit)
    started = time.monotonic()
    for target in targets:
        for _ in range(ATTEMPTS_PER_PHASE):
            name = f"{stack.local_aws.prefix}crash/key-{len(names)}"
            names.append(name)
            hit = _kill_in(stack, name, target, f"value-{len(names)}")
            kills.append((name.rsplit("/", 1)[1], target, hit))
            stack.operator.start()
            stack.operator.wait_ready()
            # settled before the next kill: this key everywhere, its message gone (or dead-lettered)
            stack.wait_phase(name, 1, {"Succeeded"}, timeout=120 + 2 * RESYNC_SECONDS)
            assert_converged(stack.local_aws, stack.fleet, [name], timeout=60)
            stack.wait_for(lambda: stack.queue_depth() == (0, 0), timeout=60, what="the key's message gone")
            if hit == target:
                break
    hits = Counter(hit for _, _, hit in kills)
    missing = [phase for phase in dict.fromkeys(targets) if hits[phase] == 0]
    assert missing == [], f"no kill hit {missing}: {kills}"

    assert_converged(stack.local_aws, stack.fleet, names, timeout=60)
    triggers = {}
    for name in names:
        rollout = stack.wait_phase(name, 1, {"Succeeded"}, timeout=60)
        assert rollout["status"]["progress"] == f"{len(stack.fleet)}/{len(stack.fleet)}"
        assert len(stack.refreshes_of(name)) == 1, name
        triggers[name.rsplit("/", 1)[1]] = rollout["spec"]["source"]["trigger"]
    dead_lettered = _dead_lettered(stack)
    # A change whose event was dead-lettered was brought by the resync, never dropped.
    for name in dead_lettered:
        assert name in names, name
    watch.assert_monotonic()
    by_resync = sorted(key for key, trigger in triggers.items() if trigger == "resync")
    print(
        f"\noperator crash: {len(kills)} SIGKILLs, {len(stack.fleet)} instances, phases hit "
        f"{dict(hits)}; per kill (key, aimed at, hit): {kills}; 0 lost, all converged "
        f"{time.monotonic() - started:.1f} s after the first write; {len(dead_lettered)} event(s) "
        f"dead-lettered after 3 receives, keys applied by resync: {by_resync or 'none'}"
    )


def _dead_lettered(stack: Any) -> list[str]:
    """Parameter names of the change events in the dead-letter queue (read, left in place)."""
    names = []
    answer = stack.sqs.receive_message(
        QueueUrl=stack.local_aws.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=30
    )
    for message in answer.get("Messages", []):
        names.append(json.loads(message["Body"])["detail"]["name"])
    return names


def test_operator_killed_in_each_phase_of_a_change_loses_no_change(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    refresh = {"maxConcurrency": 2, "maxAttempts": 20}
    stack = make_stack(
        20, visibility_timeout=6, operator_env=FAST_REDELIVERY, resync_seconds=RESYNC_SECONDS, **refresh
    )
    _route_in_waves(stack, bake_seconds=4, **refresh)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    _crash_rounds(stack, watch, PHASES)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_operator_killed_ten_times_across_the_phases_of_200_instance_rollouts_loses_no_change(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    refresh = {"maxConcurrency": 16, "maxAttempts": 20, "deadlineSeconds": 600}
    stack = make_stack(
        200,
        visibility_timeout=6,
        operator_env=FAST_REDELIVERY,
        fleet_timeout=900,
        resync_seconds=RESYNC_SECONDS,
        **refresh,
    )
    # polling 200 instances for the first wave takes a second or two: the bake leaves room for it
    _route_in_waves(stack, bake_seconds=10, **refresh)
    watch = version_watch(stack.fleet, stack.local_aws.prefix, interval=2.0)
    _crash_rounds(stack, watch, [PHASES[index % len(PHASES)] for index in range(10)])
