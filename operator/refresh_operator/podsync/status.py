"""The route's podSync status: ``registered``, ``healthy`` and the ``CloudMapSynced`` condition.

Written with server-side apply under podSync's own field manager. ``status.conditions`` is a list-map keyed
by ``type`` in the CRD, so an apply that names only ``CloudMapSynced`` owns only that entry: the operator
core's ``Ready`` condition (written under its own manager) is left alone, and so are fields podSync never
names. Building the apply body is pure; sending it lives in ``kube``.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

CONDITION_TYPE = "CloudMapSynced"
API_VERSION = "configrefresh.io/v1alpha1"
KIND = "ConfigRoute"


@dataclasses.dataclass(frozen=True)
class SyncState:
    """What podSync reports for a route."""

    registered: int
    healthy: int
    ok: bool
    reason: str
    message: str


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def existing_condition(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The route's current CloudMapSynced condition, if any (keeps lastTransitionTime across restarts)."""
    for condition in (body.get("status") or {}).get("conditions") or ():
        if condition.get("type") == CONDITION_TYPE:
            return dict(condition)
    return None


def build_condition(
    state: SyncState,
    *,
    generation: int,
    previous: Mapping[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    """The condition in the standard shape; lastTransitionTime moves only when the status flips."""
    status = "True" if state.ok else "False"
    transition = now
    if previous and previous.get("status") == status and previous.get("lastTransitionTime"):
        transition = str(previous["lastTransitionTime"])
    return {
        "type": CONDITION_TYPE,
        "status": status,
        "reason": state.reason,
        "message": state.message,
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }


def apply_body(
    *, namespace: str, name: str, state: SyncState, condition: Mapping[str, Any]
) -> dict[str, Any]:
    """The server-side apply configuration for the route's /status subresource."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "status": {
            "registered": state.registered,
            "healthy": state.healthy,
            "conditions": [dict(condition)],
        },
    }
