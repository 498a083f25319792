"""The route's CloudMapSynced condition and the server-side apply body podSync sends."""

from __future__ import annotations

import pytest

from refresh_operator.podsync.config import PodSyncSettings
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


def test_settings_default_and_override_interval() -> None:
    assert PodSyncSettings.from_env({}).reconcile_interval_seconds == 60.0
    settings = PodSyncSettings.from_env(
        {
            "CONFIG_REFRESH_PODSYNC_INTERVAL_SECONDS": "2.5",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
            "AWS_REGION": "eu-west-1",
        }
    )
    assert (settings.reconcile_interval_seconds, settings.aws_endpoint_url, settings.aws_region) == (
        2.5,
        "http://127.0.0.1:1",
        "eu-west-1",
    )


def test_endpoint_override_follows_the_core_settings_order() -> None:
    env = {"CONFIG_REFRESH_AWS_ENDPOINT_URL": "http://127.0.0.1:2", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    assert PodSyncSettings.from_env(env).aws_endpoint_url == "http://127.0.0.1:2"
    assert PodSyncSettings.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).aws_region == "eu-west-1"


@pytest.mark.parametrize("raw", ["soon", "0", "-1"])
def test_a_bad_interval_is_named(raw: str) -> None:
    with pytest.raises(ValueError, match="CONFIG_REFRESH_PODSYNC_INTERVAL_SECONDS"):
        PodSyncSettings.from_env({"CONFIG_REFRESH_PODSYNC_INTERVAL_SECONDS": raw})
