"""The one textual form of a timestamp in the two kinds: RFC 3339, UTC, microseconds, 'Z'."""

from __future__ import annotations

import datetime


def canonical_time(moment: datetime.datetime) -> str:
    """UTC with microseconds and 'Z' (a naive time is taken as UTC), as the CRDs store `date-time`s."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime.datetime:
    """A timestamp as written by `canonical_time` or by the API server (seconds only), in UTC."""
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


def now_text() -> str:
    """Now, in the canonical form without the fraction when it is zero (status times, conditions)."""
    return canonical_time(datetime.datetime.now(datetime.UTC)).replace(".000000Z", "Z")
