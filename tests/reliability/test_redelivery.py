"""Fault 4: every message delivered twice and out of order: one ConfigRefresh per key, no regression.

The operator is stopped while the writes happen, so their change events pile up on the queue; the test
takes them off, and puts every body back twice, newest first. Started again, the operator sees each event
twice and in reverse order. Every read it makes comes after the last write, so each of a key's six
deliveries reads the newest version: a key gets exactly one ConfigRefresh, of that version, and the other
deliveries are duplicates of it (docs/reliability.md, fault 4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devstack.stack.kube import wait_for
from tests.reliability.checks import FINISHED, VersionWatch, assert_converged

KEYS = 4
WRITES_PER_KEY = 3


def _drain(stack: Any, expected: int) -> list[str]:
    bodies: list[str] = []

    def take() -> bool:
        answer = stack.sqs.receive_message(
            QueueUrl=stack.local_aws.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in answer.get("Messages", []):
            bodies.append(message["Body"])
            stack.sqs.delete_message(
                QueueUrl=stack.local_aws.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        return len(bodies) >= expected

    wait_for(take, timeout=30, interval=0, what=f"{expected} change events on the queue")
    return bodies


def test_every_message_twice_and_reordered_makes_one_object_per_key(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(6)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    stack.operator.stop()
    names = [f"{stack.local_aws.prefix}dup/key-{index}" for index in range(KEYS)]
    for round_ in range(WRITES_PER_KEY):
        for name in names:
            stack.put(name, f"{name}-r{round_}")
    bodies = _drain(stack, KEYS * WRITES_PER_KEY)
    assert len(bodies) == KEYS * WRITES_PER_KEY
    for body in reversed(bodies):
        stack.send_raw(body)
    for body in reversed(bodies):
        stack.send_raw(body)
    stack.operator.start()
    stack.operator.wait_ready()

    assert_converged(stack.local_aws, stack.fleet, names)
    stack.wait_for(lambda: stack.queue_depth() == (0, 0), timeout=60, what="every copy consumed")
    for name in names:

        def finished(name: str = name) -> Any:
            return (
                (items := stack.refreshes_of(name))
                and all((i.get("status") or {}).get("phase") in FINISHED for i in items)
                and items
            )

        objects = wait_for(
            finished,
            timeout=60,
            what=f"rollouts of {name} finished",
        )
        versions = [(o["spec"]["parameter"]["version"], o["status"]["phase"]) for o in objects]
        assert versions == [(WRITES_PER_KEY, "Succeeded")], (name, versions)
    assert stack.metric('config_refresh_events_received_total{outcome="duplicate"}') >= KEYS
    watch.assert_monotonic()
    print(
        f"\nredelivery: {2 * len(bodies)} deliveries of {len(bodies)} events, objects per key "
        f"{[len(stack.refreshes_of(n)) for n in names]}, {watch.observations} GetState observations"
    )
