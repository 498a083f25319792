"""What a rollout works on besides the API package's typed ConfigRefresh: the object as the handler saw it
(`Subject`), how it posts Events, and the retry signal."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

EventPoster = Callable[[str, str, str], None]
"""(type "Normal"|"Warning", reason, message) → a Kubernetes Event on the object."""


class RetryLater(Exception):
    """A transient problem; the handler should be retried after `delay` seconds."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


@dataclasses.dataclass(frozen=True)
class Subject:
    """One ConfigRefresh object as the handler saw it: where it is, its status then, and its Events."""

    namespace: str
    name: str
    generation: int
    current: Mapping[str, Any]
    """`status` as it was when the handler started."""
    post_event: EventPoster
    uid: str = ""
    """metadata.uid: an object deleted and created again under the same name is another rollout."""

    @property
    def phase(self) -> str | None:
        phase = self.current.get("phase")
        return str(phase) if phase is not None else None
