"""Deterministic ConfigRefresh names, so duplicate deliveries and competing replicas converge on one object.

`<route>-<hash8(parameter name)>-v<version>-<hash6(LastModifiedDate)>`: the route keeps names readable in
`kubectl get`, the name hash keeps parameter names (slashes, upper case, any length) out of a DNS label,
the version says which change it is, and the LastModifiedDate hash separates "version 1" before and after
a delete-and-recreate. The result is a DNS-1123 label of at most 63 characters; a route name too long to
fit is shortened and given a hash of its own so two long routes never share a prefix by accident.
"""

from __future__ import annotations

import datetime
import hashlib
import re

from configrefresh_api.times import canonical_time

MAX_LENGTH = 63
"""Of an object name here (a DNS-1123 label) and of a label value."""
_INVALID = re.compile(r"[^a-z0-9-]+")


def short_hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def parameter_hash(name: str) -> str:
    """The label value identifying a parameter (16 hex chars; the name keeps the first 8)."""
    return short_hash(name, 16)


def label_value(text: str) -> str:
    """A name as a label value: label values hold at most 63 characters (route names are DNS labels)."""
    return text[:MAX_LENGTH]


def _label_safe(text: str) -> str:
    return _INVALID.sub("-", text.lower()).strip("-")


def refresh_name(
    *,
    route: str,
    parameter_name: str,
    version: int,
    last_modified: datetime.datetime,
    repair: str | None = None,
) -> str:
    """`repair` (anti-entropy) adds `-r<hash5(repair)>`: a targeted refresh of a version already rolled out
    needs a name of its own, one per repair pass (the caller passes the pass time and the targets).
    `configctl refresh` passes its own creation time as `last_modified`, so a manual refresh never
    collides with the event-driven object for the same version."""
    suffix = f"-{short_hash(parameter_name, 8)}-v{version}-{short_hash(canonical_time(last_modified), 6)}"
    if repair is not None:
        suffix += f"-r{short_hash(repair, 5)}"
    prefix = _label_safe(route) or "route"
    room = MAX_LENGTH - len(suffix)
    if len(prefix) > room:
        tag = short_hash(route, 4)
        prefix = f"{prefix[: room - len(tag) - 1].rstrip('-')}-{tag}"
    return f"{prefix}{suffix}"
