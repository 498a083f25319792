"""Fault 2: the API server stopped while changes are written: no message is deleted before its
ConfigRefresh exists (none can exist while the API server is down), and everything lands after it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.checks import VersionWatch, assert_converged


def _outage(stack: Any, watch: VersionWatch, seconds: float, keys: int) -> None:
    names = [f"{stack.local_aws.prefix}outage/key-{index}" for index in range(keys)]
    written = 0
    held_samples = []
    stack.control_plane.stop_apiserver()
    stopped = time.monotonic()
    try:
        while time.monotonic() - stopped < seconds:
            name = names[written % keys]
            stack.put(name, f"during-outage-{written}")
            written += 1
            visible, in_flight = stack.queue_depth()
            held_samples.append(visible + in_flight)
            # nothing is acknowledged without its object: every key written so far keeps a message on the
            # queue (per-key coalescing deletes a message only when a newer one of its key is held, so
            # a key holds one or two; the counts are SQS's approximate ones)
            keys_written = min(written, keys)
            assert visible + in_flight >= keys_written, (visible, in_flight, written, keys_written)
            time.sleep(seconds / (3 * keys))
    finally:
        stack.control_plane.start_apiserver()
    back = time.monotonic()
    assert stack.operator.returncode is None, "the operator exited during the outage"
    assert_converged(stack.local_aws, stack.fleet, names, timeout=180)
    converged = time.monotonic() - back
    stack.wait_for(lambda: stack.queue_depth() == (0, 0), timeout=60, what="every message deleted")
    for name in names:
        objects = stack.refreshes_of(name)
        assert objects, name
        newest = max(objects, key=lambda o: o["spec"]["parameter"]["version"])
        assert newest["spec"]["parameter"]["version"] == max(v for _, v in stack.values(name)), name
    watch.assert_monotonic()
    print(
        f"\nAPI server down {seconds:.0f} s: {written} writes to {keys} keys held on the queue "
        f"(max {max(held_samples)} messages), all converged {converged:.1f} s after it came back"
    )


def test_api_server_down_while_changes_are_written(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(10)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    _outage(stack, watch, seconds=20, keys=3)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_api_server_down_while_many_changes_are_written(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(50, fleet_timeout=600)
    watch = version_watch(stack.fleet, stack.local_aws.prefix, interval=1.0)
    _outage(stack, watch, seconds=60, keys=10)
