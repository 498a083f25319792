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

from configrefresh_api.conditions import condition, find
from configrefresh_api.groupversion import API_VERSION, ROUTE_KIND

CONDITION_TYPE = "CloudMapSynced"


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
    return find((body.get("status") or {}).get("conditions") or (), CONDITION_TYPE)


def build_condition(
    state: SyncState,
    *,
    generation: int,
    previous: Mapping[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    """The condition in the standard shape; lastTransitionTime moves only when the status flips."""
    return condition(
        CONDITION_TYPE,
        status=state.ok,
        reason=state.reason,
        message=state.message,
        generation=generation,
        now=now,
        previous=previous,
    )


def apply_body(
    *, namespace: str, name: str, state: SyncState, condition: Mapping[str, Any]
) -> dict[str, Any]:
    """The server-side apply configuration for the route's /status subresource."""
    return {
        "apiVersion": API_VERSION,
        "kind": ROUTE_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "status": {
            "registered": state.registered,
            "healthy": state.healthy,
            "conditions": [dict(condition)],
        },
    }
