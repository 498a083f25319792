"""The API package: typed kinds read and written back unchanged, the one ConfigRefresh builder, naming,
labels, conditions, route matching, and agreement with the CRDs in crds/."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from configrefresh_api import (
    API_VERSION,
    GROUP,
    REFRESHES,
    ROUTES,
    TERMINAL_PHASES,
    VERSION,
    ConfigRefresh,
    ConfigRoute,
    Operation,
    ParameterRef,
    Phase,
    Source,
    Trigger,
    VersionKey,
    new_refresh,
)
from configrefresh_api.conditions import Condition, condition, find, merge_conditions
from configrefresh_api.labels import default_audience, refresh_selector
from configrefresh_api.matching import (
    MAX_PARAMETER_NAME_LENGTH,
    ScopePatternError,
    compile_scope_pattern,
    route_scope,
    scope_of,
)
from configrefresh_api.naming import label_value, parameter_hash, refresh_name
from configrefresh_api.phases import NOT_FAILED_RESULTS, InstanceResult
from configrefresh_api.times import canonical_time, now_text, parse_time

CRDS = Path(__file__).resolve().parents[3] / "crds"
NAME = "/config-service/acme/orders/db_url"
T0 = datetime.datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=datetime.UTC)

REFRESH_BODY: dict[str, Any] = {
    "apiVersion": "configrefresh.io/v1alpha1",
    "kind": "ConfigRefresh",
    "metadata": {
        "name": "orders-1a2b3c4d-v7-abcdef",
        "namespace": "team-a",
        "labels": {
            "configrefresh.io/route": "orders",
            "configrefresh.io/parameter-hash": parameter_hash(NAME),
            "configrefresh.io/version": "7",
        },
        "annotations": {"configrefresh.io/parameter-name": NAME},
        "ownerReferences": [
            {"apiVersion": "configrefresh.io/v1alpha1", "kind": "ConfigRoute", "name": "orders", "uid": "u-1"}
        ],
        "uid": "u-2",
        "generation": 1,
        "creationTimestamp": "2026-11-26T10:00:01Z",
        "resourceVersion": "42",
    },
    "spec": {
        "route": "orders",
        "parameter": {
            "name": NAME,
            "version": 7,
            "lastModified": "2026-11-26T10:00:00.123456Z",
            "operation": "Upsert",
            "type": "SecureString",
        },
        "scope": {"tenant": "acme"},
        "source": {"trigger": "resync", "eventId": "e-1", "eventTime": "2026-11-26T10:00:00.500000Z"},
        "targets": ["team-a.pod-1", "team-a.pod-2"],
    },
    "status": {
        "phase": "Halted",
        "waves": [1, 5, 10],
        "currentWave": 1,
        "targets": 10,
        "refreshed": 1,
        "failed": 0,
        "stale": 0,
        "gone": 1,
        "progress": "1/9",
        "startedAt": "2026-11-26T10:00:02Z",
        "completedAt": "2026-11-26T10:00:03.250000Z",
        "latencyMs": 1250,
        "instances": [
            {
                "id": "team-a.pod-1",
                "address": "10.0.0.1:50051",
                "result": "Applied",
                "version": 7,
                "attempts": 1,
            },
            {"id": "team-a.pod-2", "result": "Failed", "version": 0, "attempts": 3, "error": "deadline"},
            {
                "id": "team-a.pod-3",
                "result": "Gone",
                "version": 0,
                "attempts": 3,
                "error": "deregistered during the rollout",
            },
        ],
        "instancesTruncated": False,
        "supersededBy": "orders-1a2b3c4d-v8-abcdef",
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Halted",
                "status": "True",
                "reason": "FailureThreshold",
                "message": "wave 1 failed",
                "lastTransitionTime": "2026-11-26T10:00:03Z",
                "observedGeneration": 1,
            }
        ],
    },
}

ROUTE_BODY: dict[str, Any] = {
    "apiVersion": "configrefresh.io/v1alpha1",
    "kind": "ConfigRoute",
    "metadata": {"name": "orders", "namespace": "team-a", "generation": 3},
    "spec": {
        "parameterPrefix": "/config-service/",
        "scopePattern": r"^/config-service/(?P<tenant>[^/]+)/orders/",
        "discovery": {
            "cloudMap": {
                "namespace": "apps.local",
                "service": "orders",
                "queryParameters": {"tenant": "{tenant}"},
            }
        },
        "rollout": {
            "waves": ["1", "10%", "100%"],
            "bakeSeconds": 30,
            "failureThreshold": 0.25,
            "healthGate": {"url": "http://gate/healthz"},
        },
        "resync": {"intervalSeconds": 0},
        "refresh": {
            "port": 50051,
            "timeoutSeconds": 2,
            "maxConcurrency": 64,
            "maxAttempts": 3,
            "deadlineSeconds": 300,
            "payload": "invalidate",
            "insecureAllowPlaintext": False,
            "tls": {"enabled": True, "serverName": "orders.local", "caBundle": "TUlJ"},
            "auth": {"type": "serviceAccountToken", "audience": "orders"},
        },
        "podSync": {
            "selector": {"matchLabels": {"app": "orders"}},
            "port": 50051,
            "attributesFromLabels": ["zone"],
        },
    },
    "status": {
        "resync": {
            "lastPassTime": "2026-11-26T10:00:00Z",
            "parameters": 12,
            "calls": 2,
            "recovered": 0,
            "repairedInstances": 1,
            "verifyRequest": "20261126T100000Z-ab",
            "error": "",
        },
        "observedGeneration": 3,
        "registered": 4,
        "healthy": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Indexed",
                "message": "claims parameters under /config-service/",
                "lastTransitionTime": "2026-11-26T10:00:00Z",
                "observedGeneration": 3,
            }
        ],
    },
}


def crd(plural: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CRDS / f"{GROUP}_{plural}.yaml").read_text())
    return loaded


def schema(plural: str, *path: str) -> dict[str, Any]:
    node: dict[str, Any] = crd(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in path:
        node = node["properties"][part]
    return node


# -- the CRDs and the package agree ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plural", "kind", "short"), [(REFRESHES, "ConfigRefresh", "cfgr"), (ROUTES, "ConfigRoute", "cfgroute")]
)
def test_group_version_plural_and_kind_are_those_of_the_crds(plural: str, kind: str, short: str) -> None:
    spec = crd(plural)["spec"]
    assert (spec["group"], spec["names"]["plural"], spec["names"]["kind"]) == (GROUP, plural, kind)
    assert short in spec["names"]["shortNames"]
    assert [version["name"] for version in spec["versions"]] == [VERSION]
    assert f"{GROUP}/{VERSION}" == API_VERSION


def test_every_phase_trigger_and_operation_is_the_crds() -> None:
    assert set(schema(REFRESHES, "status", "phase")["enum"]) == {str(phase) for phase in Phase}
    assert set(schema(REFRESHES, "spec", "source", "trigger")["enum"]) == {str(t) for t in Trigger}
    assert set(schema(REFRESHES, "spec", "parameter", "operation")["enum"]) == {str(o) for o in Operation}
    assert Phase.HALTED not in TERMINAL_PHASES
    assert {Phase.SUCCEEDED, Phase.PARTIALLY_FAILED, Phase.FAILED, Phase.SUPERSEDED} == TERMINAL_PHASES


def test_every_instance_result_is_the_crds_and_gone_is_not_a_failure() -> None:
    result = schema(REFRESHES, "status", "instances")["items"]["properties"]["result"]
    assert set(result["enum"]) == {str(r) for r in InstanceResult}
    assert InstanceResult.GONE in NOT_FAILED_RESULTS
    assert not {InstanceResult.FAILED, InstanceResult.REJECTED} & NOT_FAILED_RESULTS
    assert schema(REFRESHES, "status", "gone")["type"] == "integer"


# -- typed kinds ------------------------------------------------------------------------------------------


def test_a_config_refresh_reads_and_writes_back_unchanged() -> None:
    refresh = ConfigRefresh.from_body(copy.deepcopy(REFRESH_BODY))
    assert refresh.to_body() == REFRESH_BODY
    assert refresh.name == "orders-1a2b3c4d-v7-abcdef"
    assert refresh.namespace == "team-a"
    assert refresh.spec.parameter.key == VersionKey(T0, 7)
    assert refresh.spec.source.trigger is Trigger.RESYNC
    assert refresh.status is not None
    assert refresh.status.phase is Phase.HALTED
    assert not refresh.status.terminal
    assert refresh.status.instances is not None
    assert refresh.status.instances[1].error == "deadline"
    assert refresh.status.conditions is not None
    assert refresh.status.conditions[0].is_true


def test_a_config_refresh_without_status_has_none_and_a_new_one_writes_none() -> None:
    body = {key: value for key, value in copy.deepcopy(REFRESH_BODY).items() if key != "status"}
    refresh = ConfigRefresh.from_body(body)
    assert refresh.status is None
    assert refresh.to_body() == body


def test_a_config_route_reads_and_writes_back_unchanged() -> None:
    route = ConfigRoute.from_body(copy.deepcopy(ROUTE_BODY))
    assert route.to_body() == ROUTE_BODY
    assert route.spec.refresh is not None
    assert route.spec.refresh.tls is not None
    assert route.spec.refresh.tls.server_name == "orders.local"
    assert route.spec.rollout is not None
    assert route.spec.rollout.waves == ("1", "10%", "100%")
    assert route.spec.pod_sync is not None
    assert route.spec.pod_sync.match_labels == {"app": "orders"}
    assert route.spec.resync is not None
    assert route.spec.resync.interval_seconds == 0  # zero is a value, not "absent"


def test_a_minimal_route_keeps_what_it_does_not_set_unset() -> None:
    body = {
        "apiVersion": API_VERSION,
        "kind": "ConfigRoute",
        "metadata": {"name": "orders"},
        "spec": {"parameterPrefix": "/app/", "discovery": {"cloudMap": {"namespace": "n", "service": "s"}}},
    }
    route = ConfigRoute.from_body(body)
    assert (route.spec.scope_pattern, route.spec.refresh, route.spec.rollout, route.status) == (None,) * 4
    assert route.to_body() == body
    assert route.spec.scope_of("/app/x") == {}
    assert route.spec.scope_of("/other/x") is None


@pytest.mark.parametrize(
    ("parameter", "key"),
    [
        (ParameterRef(name=NAME, version=7, last_modified=T0), VersionKey(T0, 7)),
        (ParameterRef(name=NAME, last_modified=T0, operation=Operation.DELETE), VersionKey(T0, 0)),
        (ParameterRef(name=NAME, version=7), None),  # a manual refresh of whatever is current
        (ParameterRef(name=NAME, last_modified=T0), None),
    ],
)
def test_the_version_a_parameter_reference_names(parameter: ParameterRef, key: VersionKey | None) -> None:
    assert parameter.key == key
    assert ParameterRef.from_body(parameter.to_body()) == parameter


def test_a_spec_without_source_or_operation_reads_the_crd_defaults() -> None:
    refresh = ConfigRefresh.from_body(
        {"metadata": {"name": "x"}, "spec": {"route": "r", "parameter": {"name": NAME}}}
    )
    assert refresh.spec.source == Source(trigger=Trigger.MANUAL)
    assert (refresh.spec.parameter.operation, refresh.spec.parameter.value_type) == (
        Operation.UPSERT,
        "String",
    )
    assert refresh.spec.targets == ()


# -- the one builder --------------------------------------------------------------------------------------


def test_a_new_refresh_is_named_labelled_and_owned_as_the_operator_and_configctl_expect() -> None:
    refresh = new_refresh(
        namespace="team-a",
        route="orders",
        route_uid="u-1",
        parameter=ParameterRef(name=NAME, version=7, last_modified=T0, value_type="SecureString"),
        scope={"tenant": "acme"},
        source=Source(trigger=Trigger.EVENT, event_id="e-1", event_time=T0),
    )
    body = refresh.to_body()
    assert body["metadata"]["name"] == refresh_name(
        route="orders", parameter_name=NAME, version=7, last_modified=T0
    )
    assert body["metadata"]["labels"] == {
        "configrefresh.io/route": "orders",
        "configrefresh.io/parameter-hash": parameter_hash(NAME),
        "configrefresh.io/version": "7",
    }
    assert body["metadata"]["annotations"] == {"configrefresh.io/parameter-name": NAME}
    assert body["metadata"]["ownerReferences"] == [
        {"apiVersion": API_VERSION, "kind": "ConfigRoute", "name": "orders", "uid": "u-1"}
    ]
    assert body["spec"]["source"] == {"trigger": "event", "eventId": "e-1", "eventTime": canonical_time(T0)}
    assert body["spec"]["parameter"]["lastModified"] == "2026-11-26T10:00:00.123456Z"
    assert "targets" not in body["spec"]
    assert "status" not in body
    assert ConfigRefresh.from_body(body) == refresh


def test_a_new_deletion_has_no_version_and_no_owner_without_the_routes_uid() -> None:
    refresh = new_refresh(
        namespace="team-a",
        route="orders",
        parameter=ParameterRef(name=NAME, last_modified=T0, operation=Operation.DELETE),
        scope={},
        source=Source(trigger=Trigger.RESYNC),
        targets=["team-a.pod-1"],
    )
    body = refresh.to_body()
    assert "version" not in body["spec"]["parameter"]
    assert body["metadata"]["labels"]["configrefresh.io/version"] == "0"
    assert "v0-" in body["metadata"]["name"]
    assert "ownerReferences" not in body["metadata"]
    assert body["spec"]["targets"] == ["team-a.pod-1"]


def test_a_new_refresh_without_a_time_to_name_it_by_needs_a_name() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        new_refresh(
            namespace="n",
            route="r",
            parameter=ParameterRef(name=NAME, version=1),
            scope={},
            source=Source(),
        )
    named = new_refresh(
        namespace="n",
        route="r",
        parameter=ParameterRef(name=NAME, version=1),
        scope={},
        source=Source(),
        name="x",
    )
    assert named.name == "x"


# -- naming, labels, times --------------------------------------------------------------------------------


def test_labels_and_selectors() -> None:
    long_route = "r" * 80
    assert label_value(long_route) == "r" * 63
    assert refresh_selector() == ""
    assert refresh_selector(route=long_route, parameter_name=NAME, halted=True) == (
        f"configrefresh.io/parameter-hash={parameter_hash(NAME)},configrefresh.io/route={'r' * 63},"
        "configrefresh.io/halted=true"
    )
    assert default_audience("apps.local", "orders") == "configrefresh.io/apps.local/orders"


def test_times_have_one_form_and_read_what_the_api_server_writes() -> None:
    assert canonical_time(T0) == "2026-11-26T10:00:00.123456Z"
    assert canonical_time(T0.replace(tzinfo=None)) == "2026-11-26T10:00:00.123456Z"
    assert parse_time("2026-11-26T10:00:00Z") == T0.replace(microsecond=0)
    assert parse_time(canonical_time(T0)) == T0
    assert now_text().endswith("Z")


# -- conditions -------------------------------------------------------------------------------------------


def test_a_condition_keeps_its_transition_time_until_its_status_flips() -> None:
    first = condition("Ready", status=True, reason="Indexed", message="ok", generation=1, now="t1")
    assert first == {
        "type": "Ready",
        "status": "True",
        "reason": "Indexed",
        "message": "ok",
        "lastTransitionTime": "t1",
        "observedGeneration": 1,
    }
    same = condition(
        "Ready", status=True, reason="Indexed", message="still", generation=2, now="t2", previous=first
    )
    assert same["lastTransitionTime"] == "t1"
    flipped = condition(
        "Ready", status=False, reason="Bad", message="no", generation=3, now="t3", previous=same
    )
    assert flipped["lastTransitionTime"] == "t3"
    assert (
        len(condition("Ready", status=False, reason="Bad", message="x" * 5000, generation=1)["message"])
        == 1024
    )
    assert Condition.from_body(first).to_body() == first


def test_merging_replaces_by_type_and_keeps_unchanged_transition_times() -> None:
    ready = condition("Ready", status=True, reason="Indexed", message="ok", generation=1, now="t1")
    synced = condition("CloudMapSynced", status=True, reason="Synced", message="ok", generation=1, now="t1")
    again = condition("Ready", status=True, reason="Indexed", message="ok", generation=2, now="t2")
    merged = merge_conditions([ready, synced], [again])
    assert [item["type"] for item in merged] == ["Ready", "CloudMapSynced"]
    assert merged[0]["lastTransitionTime"] == "t1"
    assert merged[0]["observedGeneration"] == 2
    assert find(merged, "CloudMapSynced") == synced
    assert find(merged, "Halted") is None


# -- route matching ---------------------------------------------------------------------------------------


def test_a_route_claims_by_prefix_then_by_scope_pattern() -> None:
    pattern = compile_scope_pattern(r"^/config-service/(?P<tenant>[^/]+)/orders/(?P<opt>x)?")
    assert scope_of("/config-service/", pattern, NAME) == {"tenant": "acme"}  # unmatched groups left out
    assert scope_of("/config-service/", pattern, "/config-service/acme/billing/x") is None
    assert scope_of("/other/", pattern, NAME) is None
    assert scope_of("/config-service/", None, NAME) == {}
    assert scope_of("/config-service/", None, "/config-service/" + "a" * MAX_PARAMETER_NAME_LENGTH) is None


@pytest.mark.parametrize("pattern", [r"^(?P<a>x)\1", r"^(?=x)", "x" * 600])
def test_a_pattern_re2_cannot_run_is_refused_with_a_reason(pattern: str) -> None:
    with pytest.raises(ScopePatternError) as refused:
        compile_scope_pattern(pattern)
    assert refused.value.reason == "InvalidScopePattern"


def test_a_route_body_claims_nothing_when_refused_or_its_pattern_is_invalid() -> None:
    body = copy.deepcopy(ROUTE_BODY)
    assert route_scope(body, NAME) == {"tenant": "acme"}
    assert route_scope(body, "/config-service/acme/billing/x") is None
    body["status"]["conditions"][0]["status"] = "False"
    assert route_scope(body, NAME) is None  # the operator refused this generation: it routes nothing
    body["metadata"]["generation"] = 4
    assert route_scope(body, NAME) == {"tenant": "acme"}  # a newer generation not judged yet
    body["spec"]["scopePattern"] = r"(?P<a>x)\1"
    assert route_scope(body, NAME) is None
