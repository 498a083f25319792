"""SQS ReceiveMessage in linear time, patched inside the moto server process.

moto 5.2's ReceiveMessage checks each message it hands out against the queue's retention period by
calling `get_queue_attributes(queue, ["MessageRetentionPeriod"])`, which builds every attribute of the
queue, three of them counts over all its messages (visible, not visible, delayed), and does so twice per
message. With a few hundred messages in flight (a load test at 50 changes/s holds that many while they
wait for their key's follow-up), each receive cost tens of milliseconds of moto's only core, and moto,
not the operator, capped the offered rate: 81 % of the moto server's CPU in a profiled 50/s run was
this check. The patch reads the same period from the queue directly; what is returned is unchanged.
"""

from __future__ import annotations

from typing import Any

_INSTALLED_MARK = "_devstack_sqs_installed"


def install() -> None:
    """Patch moto's SQS backend once per process."""
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend, _INSTALLED_MARK, False):
        return

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention_period = int(self.get_queue(queue_name).message_retention_period)
        retain_until: float = retention_period + message.sent_timestamp / 1000
        return retain_until > unix_time()

    setattr(  # noqa: B010 - replacing a method of a third-party class is the point
        SQSBackend, "is_message_valid_based_on_retention_period", is_message_valid_based_on_retention_period
    )
    setattr(SQSBackend, _INSTALLED_MARK, True)
