"""SQS ReceiveMessage in linear time and queue counts with one clock read, patched inside the moto server
process.

moto 5.2's ReceiveMessage checks each message it hands out against the queue's retention period by
calling `get_queue_attributes(queue, ["MessageRetentionPeriod"])`, which builds every attribute of the
queue, three of them counts over all its messages (visible, not visible, delayed), and does so twice per
message. With a few hundred messages in flight (a load test at 50 changes/s holds that many while they
wait for their key's follow-up), each receive cost tens of milliseconds of moto's only core, and moto,
not the operator, capped the offered rate: 81 % of the moto server's CPU in a profiled 50/s run was
this check. The patch reads the same period from the queue directly; what is returned is unchanged.

The same backlog made every SendMessage slow too: moto's SendMessage reads `queue.attributes` (for
ContentBasedDeduplication), which counts the queue's visible, in-flight and delayed messages, and each
count reads the clock once or twice per message (`Message.visible`, `Message.delayed`: a naive-datetime
subtraction each). In a profiled 50/s load run that was 39 % of moto's CPU, inside PutParameter (the
change event is sent to SQS there), and the offered rate fell to 23.5/s. The patch makes each count, and
the visible-message list the long poll waits on, one pass that reads the clock once; the comparisons and
so the answers are moto's.
"""

from __future__ import annotations

from typing import Any

_INSTALLED_MARK = "_devstack_sqs_installed"


def install() -> None:
    """Patch moto's SQS backend once per process."""
    from moto.core.utils import unix_time, unix_time_millis
    from moto.sqs.models import Queue, SQSBackend

    if getattr(SQSBackend, _INSTALLED_MARK, False):
        return

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention_period = int(self.get_queue(queue_name).message_retention_period)
        retain_until: float = retention_period + message.sent_timestamp / 1000
        return retain_until > unix_time()

    setattr(  # noqa: B010 - replacing a method of a third-party class is the point
        SQSBackend, "is_message_valid_based_on_retention_period", is_message_valid_based_on_retention_period
    )

    # Message.visible is `now > visible_at`, Message.delayed is `now < delayed_until`, each with its own
    # clock read; here one read serves the whole pass. moto's ApproximateNumberOfMessages is
    # len(self.messages), so it takes the one-pass list below.
    def messages(self: Any) -> list[Any]:
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def approximate_number_of_messages_not_visible(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    def approximate_number_of_messages_delayed(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    for name, count in (
        ("messages", messages),
        ("approximate_number_of_messages_not_visible", approximate_number_of_messages_not_visible),
        ("approximate_number_of_messages_delayed", approximate_number_of_messages_delayed),
    ):
        setattr(Queue, name, property(count))
    setattr(SQSBackend, _INSTALLED_MARK, True)
