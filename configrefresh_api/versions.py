"""Ordering of parameter versions: by (LastModifiedDate, Version), never by version alone.

Parameter Store restarts versions at 1 when a parameter is deleted and created again, so "version 2" can
be newer than "version 9". LastModifiedDate orders across that; the version breaks ties within one
timestamp. A deletion is a point in this order too (at the time of the delete event, version 0), so a late
UPSERT of an older version never resurrects a deleted parameter and a re-create after a delete wins.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum


class Operation(enum.StrEnum):
    """`spec.parameter.operation`."""

    UPSERT = "Upsert"
    DELETE = "Delete"


@dataclasses.dataclass(frozen=True, order=True)
class VersionKey:
    """A totally ordered point in one parameter's history."""

    last_modified: datetime.datetime
    version: int

    def __post_init__(self) -> None:
        if self.last_modified.tzinfo is None:
            raise ValueError("last_modified must be timezone-aware")


def is_newer(candidate: VersionKey, than: VersionKey | None) -> bool:
    return than is None or candidate > than
