"""The lost re-create found by the property test, replayed on purpose against the real stack.

A name is deleted; later, a message for it is redelivered and read while the name is still gone (a
DELETE), and the name is re-created (version 1) within that same wall-clock second. The deletion used to
be ordered at the end of the event's second, after the re-create, so every instance kept the tombstone
for good. Every instance must end up holding the re-created version 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from devstack.stack.kube import wait_for
from tests.reliability.checks import VersionWatch, assert_converged

ROUNDS = 3


def _delete_objects(stack: Any, name: str) -> set[str]:
    return {
        str(item["metadata"]["name"])
        for item in stack.refreshes_of(name)
        if item["spec"]["parameter"]["operation"] == "Delete"
    }


def test_a_re_create_in_the_second_of_a_redelivered_delete_reaches_every_instance(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(3)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    name = f"{stack.local_aws.prefix}recreate/key"
    same_second = 0
    for round_ in range(ROUNDS):
        stack.put(name, f"before-{round_}")
        assert_converged(stack.local_aws, stack.fleet, [name], timeout=60)
        stack.ssm.delete_parameter(Name=name)
        assert_converged(stack.local_aws, stack.fleet, [name], timeout=60)
        known = _delete_objects(stack, name)

        time.sleep(1.02 - time.time() % 1)  # start of a fresh second
        started = int(time.time())
        stack.send_event(name, operation="Delete")  # the redelivered delete, read while the name is gone

        def read_as_delete(before: set[str] = known) -> set[str]:
            return _delete_objects(stack, name) - before

        wait_for(
            read_as_delete,
            timeout=30,
            interval=0.05,
            what="the redelivered delete read as a DELETE",
        )
        assert stack.put(name, f"re-created-{round_}") == 1
        same_second += int(time.time()) == started
        assert_converged(stack.local_aws, stack.fleet, [name], timeout=60)
    watch.assert_monotonic()
    print(f"\nre-create after a redelivered delete: {ROUNDS} rounds, {same_second} in the delete's second")
