"""Fault 6: fuzzed message bodies sent straight to the change queue, with valid traffic interleaved.

Bodies: malformed and truncated JSON, JSON that is not an object, wrong types, missing fields, other
event sources, unknown operations, huge names and unicode names. The consumer never crashes or stalls,
every valid change is applied, every invalid body reaches the DLQ after `maxReceiveCount` receives (a
short visibility timeout makes the redrive fast), and the queue ends empty.
"""

from __future__ import annotations

import datetime
import json
import random
import string
import time
from collections.abc import Callable
from typing import Any

import pytest

from devstack.aws.events import Operation, new_event_id, parameter_change_event
from tests.reliability.checks import VersionWatch, assert_converged

UNICODE = ["ünïcödé", "💥", "名前", "\u202eevil", "\ufeffbom", "ø/ø/ø", "ключ"]


def _valid(stack: Any, name: str, operation: Operation = "Update") -> dict[str, Any]:
    body: dict[str, Any] = parameter_change_event(
        name=name,
        parameter_type="String",
        operation=operation,
        account_id=stack.local_aws.account_id,
        region=stack.local_aws.region,
        event_id=new_event_id(),
        moment=datetime.datetime.now(datetime.UTC),
    )
    return body


def _bad(stack: Any, rng: random.Random) -> str:
    """A body the consumer must refuse (counted invalid, left for the DLQ)."""
    event = _valid(stack, f"{stack.local_aws.prefix}fuzz/{rng.randrange(1000)}")
    kind = rng.randrange(9)
    if kind == 0:
        text = json.dumps(event)
        return text[: rng.randrange(1, len(text) - 1)]
    if kind == 1:
        return rng.choice(["[]", "[1, 2]", "42", "null", '"text"', "true", "{}"])
    if kind == 2:
        event["source"] = rng.choice(["aws.ec2", "aws.s3", "custom.app", "", "AWS.SSM"])
        return json.dumps(event)
    if kind == 3:
        event["detail-type"] = rng.choice(["EC2 Instance State-change", "", "parameter store change"])
        return json.dumps(event)
    if kind == 4:
        event["detail"]["operation"] = rng.choice(["Explode", "", "update", 7, None])
        return json.dumps(event)
    if kind == 5:
        field = rng.choice(["id", "time", "detail", "source"])
        del event[field]
        return json.dumps(event)
    if kind == 6:
        path = rng.choice([("detail", "name"), ("detail",), ("id",), ("time",)])
        target: Any = event
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = rng.choice([123, [1], {"a": 1}, None, 1.5, True])
        return json.dumps(event)
    if kind == 7:
        del event["detail"]["name"]
        return json.dumps(event)
    return "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 400)))


def _odd_name(stack: Any, rng: random.Random) -> str:
    """A well-formed event whose name is huge or unicode: refused somewhere, never applied."""
    if rng.random() < 0.5:
        name = f"{stack.local_aws.prefix}fuzz/" + "a" * rng.randrange(2100, 20000)
    else:
        name = f"{stack.local_aws.prefix}fuzz/{rng.choice(UNICODE)}/{rng.choice(UNICODE)}"
    return json.dumps(_valid(stack, name), ensure_ascii=rng.random() < 0.5)


def _queue_total(stack: Any, url: str) -> int:
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _fuzz(stack: Any, watch: VersionWatch, count: int, seed: int) -> None:
    rng = random.Random(seed)
    names = [f"{stack.local_aws.prefix}fuzz/valid-{index}" for index in range(5)]
    bad = odd = valid_writes = 0
    started = time.monotonic()
    batch: list[str] = []
    for index in range(count):
        if rng.random() < 0.9:
            batch.append(_bad(stack, rng))
            bad += 1
        else:
            batch.append(_odd_name(stack, rng))
            odd += 1
        if len(batch) == 10:
            stack.sqs.send_message_batch(
                QueueUrl=stack.local_aws.queue_url,
                Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)],
            )
            batch = []
        if index % 25 == 0:
            stack.put(names[valid_writes % len(names)], f"valid-{valid_writes}")
            valid_writes += 1
    for body in batch:
        stack.send_raw(body)
    assert_converged(stack.local_aws, stack.fleet, names, timeout=120)
    applied = time.monotonic() - started
    assert stack.operator.returncode is None, "the operator exited"

    stack.wait_for(
        lambda: _queue_total(stack, stack.local_aws.queue_url) == 0,
        timeout=300,
        interval=1,
        what="the change queue empty (bad bodies moved to the DLQ)",
    )
    in_dlq = _queue_total(stack, stack.local_aws.dlq_url)
    assert bad <= in_dlq <= bad + odd, (bad, odd, in_dlq)
    assert stack.metric('config_refresh_events_received_total{outcome="invalid"}') >= bad
    assert stack.operator.returncode is None, "the operator exited"
    # Not stalled: one more change after all of it is applied.
    version = stack.put(names[0], "after-the-fuzz")
    assert stack.wait_phase(names[0], version, {"Succeeded"})["status"]
    assert_converged(stack.local_aws, stack.fleet, names, timeout=60)
    watch.assert_monotonic()
    print(
        f"\nfuzz: {count} bodies ({bad} invalid, {odd} huge or unicode names) and {valid_writes} valid "
        f"writes; valid ones converged {applied:.1f} s after the first body; DLQ holds {in_dlq}; "
        f"queue empty {time.monotonic() - started:.1f} s after the first body; operator alive"
    )


def test_fuzzed_bodies_go_to_the_dlq_and_valid_changes_still_land(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(5, visibility_timeout=1, max_receive_count=3)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    _fuzz(stack, watch, count=120, seed=6)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_thousand_fuzzed_bodies(
    make_stack: Callable[..., Any], version_watch: Callable[..., VersionWatch]
) -> None:
    stack = make_stack(10, visibility_timeout=1, max_receive_count=3)
    watch = version_watch(stack.fleet, stack.local_aws.prefix)
    _fuzz(stack, watch, count=1000, seed=1000)
