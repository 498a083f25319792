"""The consumer's rules per message, with fake SQS, SSM and Kubernetes: what is deleted, what is kept."""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from configrefresh_api.times import parse_time
from configrefresh_api.versions import VersionKey
from refresh_operator.aws import AwsClients, Blocking
from refresh_operator.coalescing import Timing
from refresh_operator.consumer import Consumer
from refresh_operator.context import OperatorContext
from refresh_operator.parameter_store import deletion_key_time, deletion_time
from refresh_operator.routes import RouteIndex, route_from_object
from refresh_operator.settings import load_settings
from refresh_operator.values import ValueCache
from tests.unit.fakes.aws import FakeSqs, FakeSsm
from tests.unit.fakes.kube import FakeKube

PREFIX = "/config-service/"
T0 = datetime.datetime(2026, 11, 26, 10, 0, 0, 250000, tzinfo=datetime.UTC)


def message(body: Any, receipt: str = "r-1") -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    return {"MessageId": f"m-{receipt}", "ReceiptHandle": receipt, "Body": text}


def change(name: str, operation: str = "Update") -> dict[str, Any]:
    return {
        "id": "e-1",
        "source": "aws.ssm",
        "detail-type": "Parameter Store Change",
        "time": "2026-11-26T10:00:00Z",
        "detail": {"name": name, "type": "SecureString", "operation": operation},
    }


@pytest.fixture
def parts() -> dict[str, Any]:
    routes = RouteIndex()
    routes.upsert(
        route_from_object(
            {
                "metadata": {"name": "orders", "namespace": "team-a", "uid": "u"},
                "spec": {
                    "parameterPrefix": PREFIX,
                    "discovery": {"cloudMap": {"namespace": "n", "service": "s"}},
                },
            }
        )
    )
    values = ValueCache()
    return {
        "sqs": FakeSqs(),
        "ssm": FakeSsm(),
        "kube": FakeKube(values=values),
        "routes": routes,
        "values": values,
    }


def consumer(parts: dict[str, Any], refresh_routes: Any = None, **overrides: Any) -> Consumer:
    settings = load_settings({"CONFIG_REFRESH_QUEUE_URL": "https://sqs.local/q", "AWS_REGION": "us-east-1"})
    settings = settings.model_copy(update=overrides)
    return Consumer(
        context=OperatorContext(
            settings=settings,
            clients=AwsClients(sqs=parts["sqs"], ssm=parts["ssm"], servicediscovery=None),
            blocking=Blocking(threads=8),
            kube=parts["kube"],
            routes=parts["routes"],
            values=parts["values"],
        ),
        refresh_routes=refresh_routes,
    )


async def test_a_change_creates_one_object_without_the_value_then_deletes_the_message(
    parts: dict[str, Any],
) -> None:
    await consumer(parts).handle(message(change(f"{PREFIX}orders/db")))
    ((namespace, name), body) = next(iter(parts["kube"].objects.items()))
    assert namespace == "team-a"
    assert name.startswith("orders-")
    assert "-v3-" in name
    assert body["spec"]["parameter"]["version"] == 3
    assert body["metadata"]["annotations"]["configrefresh.io/parameter-name"] == f"{PREFIX}orders/db"
    assert "s3cr3t" not in json.dumps(body)
    assert parts["values"].take("team-a", name).value == "s3cr3t"
    assert parts["sqs"].deleted == ["r-1"]


async def test_a_duplicate_is_deleted_and_makes_no_second_object(parts: dict[str, Any]) -> None:
    subject = consumer(parts)
    await subject.handle(message(change(f"{PREFIX}orders/db"), "r-1"))
    await subject.handle(message(change(f"{PREFIX}orders/db"), "r-2"))
    assert len(parts["kube"].objects) == 1
    assert parts["sqs"].deleted == ["r-1", "r-2"]


async def test_an_invalid_message_is_not_deleted(parts: dict[str, Any]) -> None:
    await consumer(parts).handle(message("{not json"))
    assert parts["sqs"].deleted == []
    assert parts["kube"].objects == {}
    assert parts["ssm"].reads == 0


async def test_an_unrouted_name_is_deleted_without_a_read(parts: dict[str, Any]) -> None:
    await consumer(parts).handle(message(change("/elsewhere/db")))
    assert parts["sqs"].deleted == ["r-1"]
    assert parts["ssm"].reads == 0
    assert parts["kube"].objects == {}


async def test_a_route_the_index_missed_is_listed_again_before_the_message_is_deleted(
    parts: dict[str, Any],
) -> None:
    """A standby replica's index misses routes created after it started (kopf's handlers are paused)."""
    listed: list[str] = []

    async def refresh() -> bool:
        listed.append("routes")
        parts["routes"].upsert(
            route_from_object(
                {
                    "metadata": {"name": "billing", "namespace": "team-b", "uid": "b"},
                    "spec": {
                        "parameterPrefix": "/billing/",
                        "discovery": {"cloudMap": {"namespace": "n", "service": "s"}},
                    },
                }
            )
        )
        return True

    await consumer(parts, refresh).handle(message(change("/billing/db")))
    assert listed == ["routes"]
    ((namespace, name),) = parts["kube"].objects
    assert (namespace, name.split("-")[0]) == ("team-b", "billing")
    assert parts["sqs"].deleted == ["r-1"]


async def test_a_name_no_route_claims_even_after_a_fresh_list_is_deleted(parts: dict[str, Any]) -> None:
    async def refresh() -> bool:
        return False

    await consumer(parts, refresh).handle(message(change("/elsewhere/db")))
    assert parts["sqs"].deleted == ["r-1"]
    assert parts["kube"].objects == {}


def read_at(monkeypatch: pytest.MonkeyPatch, moment: datetime.datetime) -> None:
    """Every GetParameter the consumer makes starts at `moment`."""
    monkeypatch.setattr("refresh_operator.consumer._utcnow", lambda: moment)


async def test_a_missing_parameter_becomes_a_delete_without_a_version(
    parts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    read_at(monkeypatch, datetime.datetime(2026, 11, 26, 10, 0, 3, tzinfo=datetime.UTC))
    parts["ssm"].version = None
    await consumer(parts).handle(message(change(f"{PREFIX}orders/db", "Delete")))
    (body,) = parts["kube"].objects.values()
    assert body["spec"]["parameter"]["operation"] == "Delete"
    assert "version" not in body["spec"]["parameter"]
    assert body["spec"]["parameter"]["lastModified"] == "2026-11-26T10:00:00.999999Z"


async def test_while_the_api_server_is_down_the_message_is_kept(
    parts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("refresh_operator.consumer.CREATE_RETRY_SECONDS", 0.5)
    parts["kube"].down = True
    await consumer(parts).handle(message(change(f"{PREFIX}orders/db")))
    assert parts["sqs"].deleted == []


async def test_concurrent_messages_for_one_name_share_reads(parts: dict[str, Any]) -> None:
    parts["ssm"].delay = 0.2
    subject = consumer(parts)
    await asyncio.gather(
        *(subject.handle(message(change(f"{PREFIX}orders/db"), f"r-{i}")) for i in range(10))
    )
    assert parts["ssm"].reads == 2
    assert sorted(parts["sqs"].deleted) == sorted(f"r-{i}" for i in range(10))
    assert len(parts["kube"].objects) == 1


async def test_a_burst_of_changes_to_one_key_collapses_into_few_objects(parts: dict[str, Any]) -> None:
    parts["ssm"] = FakeSsm(delay=0.03, bump=True)  # every read sees a newer version, as during a burst
    subject = consumer(parts)
    tasks = []
    for index in range(25):
        tasks.append(asyncio.create_task(subject.handle(message(change(f"{PREFIX}orders/db"), f"r-{index}"))))
        await asyncio.sleep(0.02)
    await asyncio.gather(*tasks)
    versions = sorted(body["spec"]["parameter"]["version"] for body in parts["kube"].objects.values())
    assert len(versions) <= 2, versions
    assert versions[-1] == parts["ssm"].version
    assert len(parts["sqs"].deleted) == 25


def test_a_deletion_is_ordered_at_the_end_of_its_event_second() -> None:
    whole = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)
    assert deletion_time(whole) == whole + datetime.timedelta(microseconds=999_999)
    assert deletion_time(T0) == T0


def test_a_deletion_is_never_ordered_after_the_read_that_saw_it() -> None:
    whole = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)
    early = whole + datetime.timedelta(milliseconds=300)
    assert deletion_key_time(whole, early) == early
    late = whole + datetime.timedelta(seconds=5)
    assert deletion_key_time(whole, late) == deletion_time(whole)


async def test_a_delete_read_early_in_its_second_orders_before_a_re_create_later_in_it(
    parts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The found sequence: a (redelivered) message for a deleted name is read at 10:00:00.300, then the
    # name is re-created at 10:00:00.500 (version 1). The re-create must order after the deletion.
    observed = datetime.datetime(2026, 11, 26, 10, 0, 0, 300000, tzinfo=datetime.UTC)
    read_at(monkeypatch, observed)
    parts["ssm"].version = None
    await consumer(parts).handle(message(change(f"{PREFIX}orders/db", "Delete")))
    (body,) = parts["kube"].objects.values()
    deletion = body["spec"]["parameter"]
    assert deletion["operation"] == "Delete"
    assert deletion["lastModified"] == "2026-11-26T10:00:00.300000Z"
    re_create = VersionKey(datetime.datetime(2026, 11, 26, 10, 0, 0, 500000, tzinfo=datetime.UTC), 1)
    assert re_create > VersionKey(parse_time(deletion["lastModified"]), 0)


async def test_a_message_read_after_the_re_create_is_an_upsert_of_the_new_version(
    parts: dict[str, Any],
) -> None:
    parts["ssm"].version = 1  # the old delete message is redelivered after the name came back
    await consumer(parts).handle(message(change(f"{PREFIX}orders/db", "Delete")))
    (body,) = parts["kube"].objects.values()
    assert body["spec"]["parameter"]["operation"] == "Upsert"
    assert body["spec"]["parameter"]["version"] == 1


def consumer_with(parts: dict[str, Any], timing: Timing) -> Consumer:
    settings = load_settings({"CONFIG_REFRESH_QUEUE_URL": "https://sqs.local/q", "AWS_REGION": "us-east-1"})
    return Consumer(
        context=OperatorContext(
            settings=settings,
            clients=AwsClients(sqs=parts["sqs"], ssm=parts["ssm"], servicediscovery=None),
            blocking=Blocking(threads=8),
            kube=parts["kube"],
            routes=parts["routes"],
            values=parts["values"],
        ),
        timing=timing,
    )


async def test_a_fast_burst_is_read_and_recorded_a_few_times_and_ends_at_the_last_version(
    parts: dict[str, Any],
) -> None:
    # 100 writes to one key in about a second, each read answering a newer version, as in the burst row of
    # the targets table (docs/benchmarks.md); a generous quiet time keeps the loaded test machine's
    # hiccups from splitting the burst
    parts["ssm"] = FakeSsm(delay=0.002, bump=True)
    subject = consumer_with(parts, Timing(quiet_seconds=0.5))
    tasks = []
    for index in range(100):
        tasks.append(asyncio.create_task(subject.handle(message(change(f"{PREFIX}orders/db"), f"r-{index}"))))
        await asyncio.sleep(0.01)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    versions = sorted(body["spec"]["parameter"]["version"] for body in parts["kube"].objects.values())
    assert len(versions) <= 3, versions
    assert parts["ssm"].reads == len(versions)
    assert versions[-1] == parts["ssm"].version
    assert sorted(parts["sqs"].deleted) == sorted(f"r-{i}" for i in range(100))


class FailsAfterFirst(FakeKube):
    """Creates the first object, then the API server is gone."""

    def create_refresh(self, namespace: str, body: dict[str, Any]) -> bool:
        created = super().create_refresh(namespace, body)
        self.down = True
        return created


async def test_the_latest_message_of_a_follow_up_stays_queued_when_it_is_not_recorded(
    parts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("refresh_operator.consumer.CREATE_RETRY_SECONDS", 0.3)
    parts["ssm"] = FakeSsm(delay=0.1, bump=True)
    parts["kube"] = FailsAfterFirst()
    subject = consumer_with(parts, Timing(quiet_seconds=0.05))
    first = asyncio.create_task(subject.handle(message(change(f"{PREFIX}orders/db"), "r-0")))
    await asyncio.sleep(0.03)  # the first read is going on
    rest = [subject.handle(message(change(f"{PREFIX}orders/db"), f"r-{i}")) for i in range(1, 4)]
    await asyncio.wait_for(asyncio.gather(first, *rest), timeout=60)
    assert len(parts["kube"].objects) == 1
    assert parts["ssm"].reads == 2
    # r-1 and r-2 were displaced from the follow-up by r-3 and deleted at once: r-3, still queued, covers
    # their change (its redelivery reads Parameter Store after all of them were written)
    assert sorted(parts["sqs"].deleted) == ["r-0", "r-1", "r-2"]


async def test_a_burst_delivered_slowly_during_slow_fan_outs_keeps_the_documented_bound(
    parts: dict[str, Any],
) -> None:
    # A loaded machine (issue 16: 300 instances on 2 cores): the 100 writes of a 1-3 s burst reach the
    # consumer spread over longer, in clumps with gaps longer than the 0.5 s settle time between them,
    # and each rollout's fan-out takes seconds. The key's run covers its fan-out, so every clump that
    # arrives while one goes on joins the single follow-up instead of starting a rollout of its own.
    values: ValueCache = parts["values"]
    parts["kube"] = FakeKube(values=values, fan_out_seconds=1.5)
    parts["ssm"] = FakeSsm(delay=0.05, bump=True)
    subject = consumer_with(parts, Timing())
    tasks = []
    first = time.monotonic()
    for clump in range(5):  # 5 clumps of 20 messages, 0.8 s apart: delivered over 3.2 s
        if clump:
            await asyncio.sleep(0.8)
        last = time.monotonic()
        for index in range(20):
            receipt = f"r-{clump * 20 + index}"
            tasks.append(asyncio.create_task(subject.handle(message(change(f"{PREFIX}orders/db"), receipt))))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    versions = sorted(body["spec"]["parameter"]["version"] for body in parts["kube"].objects.values())
    # docs/operator.md's bound, for the span over which the consumer received the burst (4 here; before
    # the key's run covered its fan-out, each 0.8 s gap started it afresh and this made 6, as in issue 16)
    span = last - first
    assert len(versions) <= 2 + math.ceil(max(0.0, span - 1.0) / 2.0), (versions, span)
    assert versions[-1] == parts["ssm"].version
    assert sorted(parts["sqs"].deleted) == sorted(f"r-{i}" for i in range(100))


async def test_a_fan_out_that_never_reports_holds_its_key_only_for_a_bounded_time(
    parts: dict[str, Any],
) -> None:
    # On another replica, or after a restart, the rollout never reports here: the hold ends at its cap.
    parts["kube"] = FakeKube()  # no hand-back at all
    parts["ssm"] = FakeSsm(bump=True)
    subject = consumer_with(parts, Timing(hold_max_seconds=0.3, settle_seconds=0.05))
    await subject.handle(message(change(f"{PREFIX}orders/db"), "r-0"))
    started = time.monotonic()
    await asyncio.wait_for(subject.handle(message(change(f"{PREFIX}orders/db"), "r-1")), timeout=30)
    assert time.monotonic() - started < 5
    assert len(parts["kube"].objects) == 2


def change_at(name: str, moment: str) -> dict[str, Any]:
    return {**change(name), "time": moment}


async def test_a_busy_key_holds_only_its_latest_message_and_deletes_the_ones_it_covers(
    parts: dict[str, Any],
) -> None:
    # Overload: 200 messages of one key arrive while its run's fan-out goes on. Without coalescing to the
    # latest, all 200 would wait in the follow-up, each with its task and visibility heartbeat (memory that
    # follows the backlog); now the key holds the running one and one waiting, the rest deleted on arrival.
    values: ValueCache = parts["values"]
    parts["kube"] = FakeKube()  # the fan-out reports only when the test says so
    parts["ssm"] = FakeSsm(bump=True)
    subject = consumer_with(parts, Timing(settle_seconds=0.01, hold_max_seconds=120))
    await asyncio.wait_for(subject.handle(message(change(f"{PREFIX}orders/db"), "r-0")), timeout=30)
    ((namespace, first_object),) = parts["kube"].objects
    rest = [
        asyncio.create_task(subject.handle(message(change(f"{PREFIX}orders/db"), f"r-{i}")))
        for i in range(1, 201)
    ]
    # Until every covered message is deleted and its handle() has returned (60 s at most): the delete runs
    # in a thread, so on a busy machine a task finishes some ticks after its receipt is recorded.
    for _ in range(6000):
        if len(parts["sqs"].deleted) >= 200 and [task.done() for task in rest].count(False) <= 1:
            break
        await asyncio.sleep(0.01)
    assert sorted(parts["sqs"].deleted) == sorted(f"r-{i}" for i in range(200))  # r-0 and the 199 covered
    assert [task.done() for task in rest].count(False) == 1
    assert len(parts["kube"].objects) == 1
    values.fan_out_done(namespace, first_object)  # the fan-out ends: the one follow-up runs
    await asyncio.wait_for(asyncio.gather(*rest), timeout=30)
    assert sorted(parts["sqs"].deleted) == sorted(f"r-{i}" for i in range(201))
    assert len(parts["kube"].objects) == 2
    assert parts["ssm"].reads == 2
    await subject.drain(seconds=5)  # ends the second run's hold


async def test_a_late_redelivery_of_an_older_change_does_not_displace_a_newer_one(
    parts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The follow-up keeps the change with the latest event time, which orders a deletion (see
    # deletion_key_time): the older message is deleted, the newer one is the one recorded.
    read_at(monkeypatch, datetime.datetime(2026, 11, 26, 10, 0, 9, tzinfo=datetime.UTC))
    values: ValueCache = parts["values"]
    parts["kube"] = FakeKube()  # the fan-out reports only when the test says so
    subject = consumer_with(parts, Timing(settle_seconds=0.05, hold_max_seconds=120))
    name = f"{PREFIX}orders/db"
    first = asyncio.create_task(subject.handle(message(change_at(name, "2026-11-26T10:00:01Z"), "r-0")))
    await asyncio.wait_for(first, timeout=30)  # recorded; its fan-out still holds the key
    ((namespace, first_object),) = parts["kube"].objects
    parts["ssm"].version = None  # deleted at 10:00:05
    newer = asyncio.create_task(subject.handle(message(change_at(name, "2026-11-26T10:00:05Z"), "r-new")))
    await asyncio.sleep(0.01)
    older = asyncio.create_task(subject.handle(message(change_at(name, "2026-11-26T10:00:02Z"), "r-old")))
    await asyncio.wait_for(older, timeout=30)
    assert "r-old" in parts["sqs"].deleted
    assert "r-new" not in parts["sqs"].deleted
    values.fan_out_done(namespace, first_object)
    await asyncio.wait_for(newer, timeout=30)
    deletions = [
        body["spec"]["parameter"]
        for body in parts["kube"].objects.values()
        if body["spec"]["parameter"]["operation"] == "Delete"
    ]
    assert [parse_time(d["lastModified"]) for d in deletions] == [
        datetime.datetime(2026, 11, 26, 10, 0, 5, 999999, tzinfo=datetime.UTC)
    ]
    await subject.drain(seconds=5)  # ends the second run's hold


class Queue(FakeSqs):
    """FakeSqs with ReceiveMessage: `backlog` messages of `keys` names, answered up to MaxNumberOfMessages."""

    def __init__(self, backlog: int, keys: int) -> None:
        super().__init__()
        self.waiting = [message(change(f"{PREFIX}k{i % keys}"), f"r-{i}") for i in range(backlog)]
        self.asked: list[int] = []

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        count = int(kwargs["MaxNumberOfMessages"])
        self.asked.append(count)
        batch, self.waiting = self.waiting[:count], self.waiting[count:]
        if not batch:
            time.sleep(0.01)
        return {"Messages": batch}


@pytest.mark.parametrize("bound", [5, 40])
async def test_the_receive_loop_never_holds_more_than_max_held_messages(
    parts: dict[str, Any], bound: int
) -> None:
    # 300 messages over 100 keys wait in the queue, each key's fan-out slow: the loop may hold no more than
    # the bound at any moment, asks for no more than the room left, and still handles every message.
    values: ValueCache = parts["values"]
    parts["kube"] = FakeKube(values=values, fan_out_seconds=0.2)
    parts["sqs"] = queue = Queue(backlog=300, keys=100)
    settings = load_settings(
        {
            "CONFIG_REFRESH_QUEUE_URL": "https://sqs.local/q",
            "AWS_REGION": "us-east-1",
            "CONFIG_REFRESH_MAX_HELD_MESSAGES": str(bound),
        }
    )
    subject = Consumer(
        context=OperatorContext(
            settings=settings,
            clients=AwsClients(sqs=queue, ssm=parts["ssm"], servicediscovery=None),
            blocking=Blocking(threads=8),
            kube=parts["kube"],
            routes=parts["routes"],
            values=values,
        ),
        timing=Timing(settle_seconds=0.01),
    )
    stop = asyncio.Event()
    loop_task = asyncio.create_task(subject.run(stop))
    most = 0
    deadline = time.monotonic() + 60
    while len(queue.deleted) < 300 and time.monotonic() < deadline:
        most = max(most, subject.held)
        await asyncio.sleep(0.001)
    stop.set()
    await asyncio.wait_for(loop_task, timeout=60)
    assert sorted(queue.deleted) == sorted(f"r-{i}" for i in range(300))
    assert 0 < most <= bound
    assert max(queue.asked) <= min(bound, 10)
    assert subject.held == 0


class SpentReceiptSqs(FakeSqs):
    """ChangeMessageVisibility answers `code` (SQS's answer for a receipt that is deleted or superseded)."""

    def __init__(self, code: str) -> None:
        super().__init__()
        self.code = code
        self.attempts = 0

    def change_message_visibility(self, **kwargs: Any) -> None:
        self.attempts += 1
        raise ClientError({"Error": {"Code": self.code, "Message": "no"}}, "ChangeMessageVisibility")


# The settings floor (5 s) is for production: a heartbeat every 0.05 s lets a 1 s read see about 20 beats.
QUICK_HEARTBEAT = {"visibility_extension_seconds": 0.1}


async def test_a_spent_receipt_stops_the_visibility_heartbeat(parts: dict[str, Any]) -> None:
    parts["sqs"] = SpentReceiptSqs("ReceiptHandleIsInvalid")
    parts["ssm"] = FakeSsm(delay=1.0)  # the handler is busy for a second: about 20 beats
    subject = consumer(parts, **QUICK_HEARTBEAT)
    await asyncio.wait_for(subject.handle(message(change(f"{PREFIX}orders/db"))), timeout=30)
    assert parts["sqs"].attempts == 1
    assert len(parts["kube"].objects) == 1  # the change itself is recorded all the same


async def test_a_throttled_visibility_heartbeat_keeps_trying(parts: dict[str, Any]) -> None:
    parts["sqs"] = SpentReceiptSqs("ThrottlingException")
    parts["ssm"] = FakeSsm(delay=1.0)
    subject = consumer(parts, **QUICK_HEARTBEAT)
    await asyncio.wait_for(subject.handle(message(change(f"{PREFIX}orders/db"))), timeout=30)
    assert parts["sqs"].attempts >= 2
    assert len(parts["kube"].objects) == 1
