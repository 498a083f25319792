"""The route's CloudMapSynced condition and the server-side apply body podSync sends."""

from __future__ import annotations

from refresh_operator.podsync.status import SyncState, apply_body, build_condition, existing_condition

OK = SyncState(registered=3, healthy=2, ok=True, reason="Synced", message="3 registered")
BROKEN = SyncState(registered=0, healthy=0, ok=False, reason="ServiceNotFound", message="create it")


def test_transition_time_moves_only_when_the_status_flips() -> None:
    first = build_condition(OK, generation=1, previous=None, now="2026-11-26T10:00:00Z")
    same = build_condition(OK, generation=2, previous=first, now="2026-11-26T10:05:00Z")
    flipped = build_condition(BROKEN, generation=2, previous=same, now="2026-11-26T10:06:00Z")
    assert first["lastTransitionTime"] == same["lastTransitionTime"] == "2026-11-26T10:00:00Z"
    assert same["observedGeneration"] == 2
    assert flipped["lastTransitionTime"] == "2026-11-26T10:06:00Z"
    assert (flipped["status"], flipped["reason"], flipped["message"]) == (
        "False",
        "ServiceNotFound",
        "create it",
    )


def test_apply_body_names_only_podsync_fields() -> None:
    condition = build_condition(OK, generation=1, previous=None, now="2026-11-26T10:00:00Z")
    body = apply_body(namespace="team-a", name="orders", state=OK, condition=condition)
    assert body["apiVersion"] == "configrefresh.io/v1alpha1"
    assert body["kind"] == "ConfigRoute"
    assert body["metadata"] == {"name": "orders", "namespace": "team-a"}
    assert body["status"] == {"registered": 3, "healthy": 2, "conditions": [condition]}


def test_existing_condition_is_found_among_others() -> None:
    body = {
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "CloudMapSynced", "status": "False"}]
        }
    }
    assert existing_condition(body) == {"type": "CloudMapSynced", "status": "False"}
    assert existing_condition({}) is None
