"""`make demo`, for now: a Parameter Store write becomes an event on the operator's queue.

What it shows, and nothing more (issue 2, item 6): the local AWS stack starts (moto in its own process
on 127.0.0.1, with the Parameter Store change emitter); one parameter is written outside the routed
prefix and then one under it; the change event for the second arrives on the SQS queue through the
EventBridge rule and is printed; the first never arrives, which the demo proves by ordering (it was
written first, delivery happens inside the write, and a further long poll after the second event comes
back empty). Then everything is stopped, also on Ctrl-C. Exit status 1 if the event does not arrive or
the other one does.

The operator, the fan-out and the config_service instances are not part of this demo yet; later issues
add them as further steps below.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from devstack.local_aws import LocalAws, LocalAwsError

DEMO_PREFIX = "/config-service/"
INSIDE = f"{DEMO_PREFIX}demo/orders/greeting"
OUTSIDE = "/another-team/demo/greeting"
ARRIVAL_WAIT_SECONDS = 10
ABSENCE_POLL_SECONDS = 2


@dataclass
class Received:
    """What a background long poll got, and when it returned."""

    messages: list[dict[str, Any]]
    returned_at: float


def say(text: str) -> None:
    print(text, flush=True)


def start_stack() -> LocalAws:
    say("1. Starting the local AWS stack (moto in its own process, bound to 127.0.0.1) ...")
    stack = LocalAws.start(prefix=DEMO_PREFIX)
    say(f"   endpoint  {stack.endpoint_url}")
    say(f"   rule      {stack.rule_name}: Parameter Store changes whose name starts with {stack.prefix}")
    say(f"   queue     {stack.queue_url}  (DLQ after {stack.max_receive_count} receives)")
    return stack


def long_poll_in_background(stack: LocalAws, wait_seconds: int) -> tuple[threading.Thread, list[Received]]:
    """Start a long poll on the queue now, so arrival time is measured from the write, not the poll."""
    result: list[Received] = []

    def poll() -> None:
        response = stack.client("sqs").receive_message(
            QueueUrl=stack.queue_url, WaitTimeSeconds=wait_seconds, MaxNumberOfMessages=10
        )
        result.append(Received(response.get("Messages", []), time.perf_counter()))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    time.sleep(0.2)  # let the poll reach the server before the write; only the latency figure needs it
    return thread, result


def write_parameter(stack: LocalAws, name: str, value: str) -> float:
    """PutParameter; returns the moment the call was sent."""
    ssm = stack.client("ssm")
    sent_at = time.perf_counter()
    version = ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)["Version"]
    say(f"   PutParameter {name} = {value!r} -> version {version}")
    return sent_at


def run(stack: LocalAws) -> bool:
    """The demo's steps; True when the event arrived and the other did not."""
    say(f"2. Writing one parameter outside {DEMO_PREFIX}, then one under it:")
    write_parameter(stack, OUTSIDE, "hello from another team")
    poller, received = long_poll_in_background(stack, ARRIVAL_WAIT_SECONDS)
    sent_at = write_parameter(stack, INSIDE, "hello, config-refresh")
    poller.join(ARRIVAL_WAIT_SECONDS + 5)
    if not received or not received[0].messages:
        say(f"FAILED: no change event arrived on the queue within {ARRIVAL_WAIT_SECONDS} s")
        return False
    events = [json.loads(m["Body"]) for m in received[0].messages]
    sqs = stack.client("sqs")
    for message in received[0].messages:
        sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    latency_ms = (received[0].returned_at - sent_at) * 1000

    say(f"3. The change event that arrived on the queue ({latency_ms:.0f} ms after PutParameter was sent):")
    for event in events:
        say(json.dumps(event, indent=2))

    events += stack.receive_events(wait_seconds=ABSENCE_POLL_SECONDS)
    names = [e["detail"]["name"] for e in events]
    if names != [INSIDE]:
        say(f"FAILED: expected exactly one event, for {INSIDE}; the queue held events for {names}")
        return False
    say(
        f"4. The write to {OUTSIDE} did not arrive: it was made before the one above, delivery happens"
        f" inside the write, and a further {ABSENCE_POLL_SECONDS} s long poll came back empty."
    )
    return True


def main() -> int:
    stack: LocalAws | None = None
    try:
        stack = start_stack()
        ok = run(stack)
    except KeyboardInterrupt:
        say("\ninterrupted")
        return 130
    except LocalAwsError as exc:
        say(f"FAILED: {exc}")
        return 1
    finally:
        if stack is not None:
            stack.stop()
            say("5. Local AWS stack stopped.")
    if ok:
        say("Demo complete. Not shown yet (later issues): the operator, the rollout, the instances.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
