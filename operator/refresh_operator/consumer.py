"""The SQS long-poll loop: from a change event to a durable ConfigRefresh, then (only then) DeleteMessage.

Each message is handled in its own task (bounded), so one slow Kubernetes call does not hold up the
batch. The rules, in order:

- a message that is not a Parameter Store change is counted, logged once with its id and reason, and
  left alone: the queue's redrive policy moves it to the DLQ after maxReceiveCount receives;
- a name no ConfigRoute claims is deleted and counted;
- the parameter is read once (its value only when a claiming route pushes values; the routes' Cloud Map
  discovery starts beside it); a read failure leaves the message for a later receive. Messages of one
  name are coalesced (coalescing.py): the first change of a quiet name is read at once, those that
  arrive while it is being recorded or in a burst share one follow-up read, so a burst of writes costs a
  few reads and rollouts, never one per write;
- a ConfigRefresh is created per claiming route (409 = a duplicate delivery or another replica: fine);
  while the API server is unreachable the create is retried and the message's visibility extended, so
  the message is never deleted before the object exists and never lost to the DLQ by an outage;
- the value is handed to the rollout handler in memory (values.py).

The receive itself runs on a daemon thread: a 20 s long poll must not hold a pool thread or delay
shutdown. The loop never dies on an error; it counts it, backs off and polls again.

Memory does not follow the queue's backlog. A key's follow-up keeps only its latest change: a message it
displaces is deleted at once (outcome `coalesced`), since the waiting message, still on the queue, covers
its change. And the loop stops receiving while `max_held_messages` messages are held (received and not yet
deleted or left): the rest wait in SQS, durable, until there is room (backpressure, counted in
`config_refresh_consumer_backpressure_seconds_total`; `config_refresh_consumer_messages_held` shows the
level).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from configrefresh_api.phases import Trigger
from configrefresh_api.versions import Operation
from refresh_operator import metrics
from refresh_operator.aws import in_daemon_thread
from refresh_operator.backoff import doubling, equal_jitter
from refresh_operator.backpressure import Intake
from refresh_operator.coalescing import Coalescer, Timing
from refresh_operator.context import OperatorContext
from refresh_operator.events import InvalidEvent, ParameterChangeEvent, parse_envelope
from refresh_operator.kube import KubeError
from refresh_operator.parameter_store import (
    ParameterSnapshot,
    ParameterStoreError,
    deletion_key_time,
    read_parameter,
)
from refresh_operator.recorder import Recorder
from refresh_operator.routes import Route, RouteError

logger = logging.getLogger("refresh_operator.consumer")
T = TypeVar("T")

CREATE_RETRY_SECONDS = 900.0
DRAIN_SECONDS = 10.0
COALESCED = "coalesced"
RECEIPT_GONE = frozenset(
    {"ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"}
)
"""ChangeMessageVisibility errors that mean the receipt is spent: the heartbeat stops instead of warning."""
"""The outcome of a message a newer one of the same name displaced from its key's follow-up."""


def _event_time(event: ParameterChangeEvent) -> datetime.datetime:
    return event.time


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _read_now(ssm: Any, *, name: str, with_value: bool) -> ParameterSnapshot:
    """GetParameter, a missing parameter dated when the call started (in the worker thread, not when
    the read was queued). Blocking."""
    return read_parameter(ssm, name=name, with_value=with_value, deleted_at=_utcnow())


class Consumer:
    def __init__(
        self,
        *,
        context: OperatorContext,
        timing: Timing | None = None,
        refresh_routes: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._context = context
        self._refresh_routes = refresh_routes
        self._recorder = Recorder(kube_api=context.kube, blocking=context.blocking, values=context.values)
        self._slots = asyncio.Semaphore(context.settings.max_inflight_messages)
        self._intake = Intake(bound=context.settings.max_held_messages)
        self._tasks: set[asyncio.Task[None]] = set()
        self._logged_invalid: dict[str, None] = {}
        self._created: dict[str, list[tuple[str, str]]] = {}
        timing = timing or Timing(hold_max_seconds=context.settings.coalesce_hold_seconds)
        self._changes: Coalescer[str, ParameterChangeEvent, str] = Coalescer(
            self._record, timing, hold=self._hold, rank=_event_time, displaced=COALESCED
        )

    @property
    def held(self) -> int:
        """Messages received and not yet finished with (deleted, or left for a later receive)."""
        return self._intake.held

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set, then drain: see `drain`. Cancellation abandons the poll at once."""
        failures = 0
        try:
            while not stop.is_set():
                room = min(self._context.settings.max_messages, await self._intake.room(stop))
                if stop.is_set():
                    break
                try:
                    messages = await in_daemon_thread(functools.partial(self._receive, room))
                    metrics.SQS_MESSAGES_RECEIVED.inc(len(messages))
                    self._intake.take(len(messages))
                    failures = 0
                except Exception as error:
                    metrics.SQS_RECEIVE_ERRORS.inc()
                    failures += 1
                    delay = equal_jitter(failures, base_seconds=1.0, max_seconds=20.0)
                    logger.warning(
                        "SQS ReceiveMessage failed (%s); retrying in %.1fs", type(error).__name__, delay
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=delay)
                    continue
                if stop.is_set():
                    await self._release(messages)
                    self._intake.give_back(len(messages))
                    break
                for message in messages:
                    await self._slots.acquire()
                    task = asyncio.create_task(self._handle_guarded(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            await self.drain(seconds=DRAIN_SECONDS)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._changes.close()

    async def drain(self, *, seconds: float) -> None:
        """Let messages being handled finish (bounded; follow-ups run at once); the rest stays queued."""
        self._changes.flush()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=seconds)

    async def _release(self, messages: list[dict[str, Any]]) -> None:
        """Hand messages received during shutdown straight back (visibility 0) for the next consumer.

        A long poll cannot be withdrawn: a process that just stops leaves SQS delivering the next message
        to its dead connection, hiding it for a whole visibility timeout. So a clean shutdown waits for the
        poll to return (at most WaitTimeSeconds) and gives back what it brought.
        """
        for message in messages:
            try:
                await self._context.blocking.call(
                    self._context.clients.sqs.change_message_visibility,
                    QueueUrl=self._context.settings.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
            except Exception as error:
                logger.warning(
                    "Releasing message %s failed: %s", message.get("MessageId"), type(error).__name__
                )
        if messages:
            logger.info("Released %d message(s) received during shutdown", len(messages))

    def _receive(self, count: int) -> list[dict[str, Any]]:
        response = self._context.clients.sqs.receive_message(
            QueueUrl=self._context.settings.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=self._context.settings.wait_time_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    async def _handle_guarded(self, message: dict[str, Any]) -> None:
        """handle(), its in-flight slot given back once it is done or waits in a follow-up."""
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._slots.release()

        try:
            await self.handle(message, on_merge=release)
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.EVENTS_RECEIVED.labels("error").inc()
            logger.exception("Message %s failed; it stays on the queue", message.get("MessageId"))
        finally:
            release()
            self._intake.give_back(1)

    async def handle(self, message: dict[str, Any], *, on_merge: Callable[[], None] | None = None) -> None:
        """One message: validated, routed, then recorded by the run of its key that covers it.

        `on_merge` is called if the message joins a follow-up of its key (see coalescing.py) rather than
        running at once: it then waits without counting as work in progress.
        """
        message_id = str(message.get("MessageId", "?"))
        receipt = str(message["ReceiptHandle"])
        try:
            event = parse_envelope(str(message.get("Body", "")))
        except InvalidEvent as invalid:
            metrics.EVENTS_RECEIVED.labels("invalid").inc()
            if message_id not in self._logged_invalid:
                self._logged_invalid[message_id] = None
                while len(self._logged_invalid) > 10_000:
                    self._logged_invalid.pop(next(iter(self._logged_invalid)))
                logger.warning("Invalid message %s left for the DLQ: %s", message_id, invalid.reason)
            return
        if not await self._routed(event.name):
            metrics.EVENTS_RECEIVED.labels("unrouted").inc()
            logger.info("Message %s: no ConfigRoute claims %s; deleted", message_id, event.name)
            await self._delete(receipt)
            return
        heartbeat = asyncio.create_task(self._extend_visibility(receipt))
        try:
            outcome = await self._changes.submit(event.name, event, on_merge=on_merge)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        metrics.EVENTS_RECEIVED.labels(outcome).inc()
        if outcome != "error":
            await self._delete(receipt)  # created, duplicate, or coalesced (a newer message covers it)

    async def _routed(self, name: str) -> bool:
        """Whether a route claims the name; before saying no, the routes are listed again (route_sync.py:
        on a standby replica kopf's handlers are paused, so a route created since may not be indexed)."""
        if self._context.routes.match(name):
            return True
        if self._refresh_routes is not None and await self._refresh_routes():
            return bool(self._context.routes.match(name))
        return False

    async def _record(self, name: str, events: list[ParameterChangeEvent]) -> str:
        """One run for `name`: read it once, create its ConfigRefresh per claiming route.

        `events` are every message this run covers; the read starts after all of them arrived, so its
        answer is at least as new as each of their changes. The outcome (created, duplicate, unrouted,
        error) is every covered message's: on "error" none is deleted. A missing parameter is a DELETE at
        the latest covered event's time, capped at the start of the read that found it missing
        (`deletion_key_time`).
        """
        self._created.pop(name, None)  # what an earlier, failed run of this key left
        matches = self._context.routes.match(name)
        if not matches:
            return "unrouted"
        self._prefetch_discovery(matches)
        with_value = any(route.refresh.payload == "value" for route, _ in matches)
        snapshot = await self._read_once(name, with_value=with_value)
        if snapshot is None:
            return "error"
        latest = max(events, key=lambda event: event.time)
        if len(events) > 1:
            logger.info("%d change events of %s share one read (v%s)", len(events), name, snapshot.version)
        if snapshot.operation is Operation.DELETE:
            # The read's snapshot carries the moment that read started (see _read_now).
            ordered_at = deletion_key_time(latest.time, snapshot.last_modified)
            snapshot = dataclasses.replace(snapshot, last_modified=ordered_at)
        outcomes = [await self._create(route, scope, snapshot, latest) for route, scope in matches]
        if any(outcome is None for outcome in outcomes):
            return "error"
        return "created" if any(outcomes) else "duplicate"

    def _prefetch_discovery(self, matches: Sequence[tuple[Route, dict[str, str]]]) -> None:
        """Each claiming route's discovery starts now, beside the read and the create (cloudmap.prefetch)."""
        if self._context.discovery.active:
            for route, scope in matches:
                with contextlib.suppress(RouteError):  # a bad query: the rollout reports it
                    self._context.discovery.start(
                        self._context.clients.servicediscovery,
                        namespace=route.cloud_map_namespace,
                        service=route.cloud_map_service,
                        query_parameters=route.query_for(scope),
                    )

    async def _hold(self, name: str, outcome: str) -> None:
        """The key's run covers the fan-outs it created: wait until their rollouts finish (coalescing.py
        bounds the wait; on another replica they never finish here)."""
        created = self._created.pop(name, [])
        if outcome == "created" and created:
            await asyncio.gather(*(self._context.values.wait_fan_out(ns, obj) for ns, obj in created))

    async def _read_once(self, name: str, *, with_value: bool) -> ParameterSnapshot | None:
        try:
            snapshot = await self._context.blocking.call(
                _read_now, self._context.clients.ssm, name=name, with_value=with_value
            )
        except ParameterStoreError as error:
            metrics.PARAMETER_STORE_CALLS.labels("GetParameter", "error").inc()
            logger.warning("%s; the message stays on the queue", error)
            return None
        outcome = "not_found" if snapshot.operation is Operation.DELETE else "ok"
        metrics.PARAMETER_STORE_CALLS.labels("GetParameter", outcome).inc()
        return snapshot

    async def _create(
        self,
        route: Route,
        scope: dict[str, str],
        snapshot: ParameterSnapshot,
        event: ParameterChangeEvent,
    ) -> bool | None:
        """True if created, False if it existed, None if the API stayed unreachable (message kept)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + CREATE_RETRY_SECONDS
        delays = doubling(0.25, max_seconds=5.0)
        what = f"the ConfigRefresh of {snapshot.name} v{snapshot.version} on {route.namespace}/{route.name}"
        while True:
            try:
                recorded = await self._recorder.record(
                    route, snapshot, trigger=Trigger.EVENT, scope=scope, event=event
                )
            except KubeError as error:
                if 400 <= error.status < 500 and error.status not in (404, 408, 429):
                    logger.error("%s refused: %s", what, error)
                    return None
                delay = next(delays)
                if loop.time() + delay > give_up:
                    logger.error("%s not created (%s); message kept", what, error)
                    return None
                logger.warning("%s not created yet (%s); retrying", what, error)
                await asyncio.sleep(delay)
                continue
            if recorded.created:
                self._created.setdefault(snapshot.name, []).append((route.namespace, recorded.name))
                logger.info(
                    "Created ConfigRefresh %s/%s for %s v%s",
                    route.namespace,
                    recorded.name,
                    snapshot.name,
                    snapshot.version,
                )
            return recorded.created

    async def _extend_visibility(self, receipt: str) -> None:
        extension = self._context.settings.visibility_extension_seconds
        while True:
            await asyncio.sleep(extension / 2)
            try:
                await self._context.blocking.call(
                    self._context.clients.sqs.change_message_visibility,
                    QueueUrl=self._context.settings.queue_url,
                    ReceiptHandle=receipt,
                    VisibilityTimeout=extension,
                )
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code", "Unknown"))
                if code in RECEIPT_GONE:  # deleted, or redelivered to another receive: retrying cannot help
                    logger.info("Message no longer held by this receive (%s); visibility not extended", code)
                    return
                logger.warning("ChangeMessageVisibility failed: %s", code)
            except Exception as error:
                logger.warning("ChangeMessageVisibility failed: %s", type(error).__name__)

    async def _delete(self, receipt: str) -> None:
        try:
            await self._context.blocking.call(
                self._context.clients.sqs.delete_message,
                QueueUrl=self._context.settings.queue_url,
                ReceiptHandle=receipt,
            )
        except Exception as error:
            metrics.SQS_DELETE_ERRORS.inc()
            logger.warning("DeleteMessage failed (%s); the message will be redelivered", type(error).__name__)
