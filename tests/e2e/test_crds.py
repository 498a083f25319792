"""The two CRDs on a real kube-apiserver: they install, accept the samples, reject bad objects naming the
field, fill in defaults, print the columns a person reads, and keep spec and status apart."""

from __future__ import annotations

import copy
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.controlplane.plane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
SAMPLES = sorted((CRDS / "samples").glob("*.yaml"))
API_VERSION = "configrefresh.io/v1alpha1"


def _route(name: str = "orders", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "parameterPrefix": "/orders/",
        "discovery": {"cloudMap": {"namespace": "prod.internal", "service": "orders"}},
    }
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": "ConfigRoute", "metadata": {"name": name}, "spec": body}


def _refresh(name: str = "orders-db-url-v7", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "route": "orders",
        "parameter": {"name": "/orders/acme/db_url", "version": 7},
        "scope": {"tenant": "acme"},
    }
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": "ConfigRefresh", "metadata": {"name": name}, "spec": body}


def _apply(plane: ControlPlane, namespace: str, obj: dict[str, Any], *, check: bool = True) -> str:
    proc = plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=check)
    return proc.stderr if proc.returncode else proc.stdout


def _get(plane: ControlPlane, namespace: str, resource: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(plane.kubectl("get", "-n", namespace, resource, "-o", "json").stdout)
    return obj


def _patch(
    plane: ControlPlane,
    namespace: str,
    body: dict[str, Any],
    *,
    resource: str = "configrefresh/orders-db-url-v7",
    status: bool = False,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """A JSON merge patch of the object (or, with `status`, of its /status subresource)."""
    args = ["patch", "-n", namespace, resource, "--type=merge", "-p", json.dumps(body)]
    return plane.kubectl(*args, *(["--subresource=status"] if status else []), check=check)


def _patch_status(plane: ControlPlane, namespace: str, resource: str, status: dict[str, Any]) -> None:
    _patch(plane, namespace, {"status": status}, resource=resource, status=True)


def _table(output: str) -> list[dict[str, str]]:
    """`kubectl get` output as rows keyed by column header; a column's cells start where its header does."""
    lines = [line for line in output.splitlines() if line.strip()]
    header = lines[0]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{header[a:b].strip(): line[a:b].strip() for a, b in bounds} for line in lines[1:]]


def _condition(type_: str, status: str, reason: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": f"{type_} is {status}",
        "lastTransitionTime": "2026-11-26T10:00:00Z",
        "observedGeneration": 1,
    }


# ------------------------------------------------------------------------------------------ installation


def test_crds_apply_with_kubectl_and_become_established(control_plane: ControlPlane) -> None:
    out = control_plane.kubectl("apply", "-f", str(CRDS)).stdout
    assert "configroutes.configrefresh.io" in out
    assert "configrefreshes.configrefresh.io" in out
    for crd in ("configroutes.configrefresh.io", "configrefreshes.configrefresh.io"):
        control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd}")
        established = control_plane.kubectl(
            "get", f"crd/{crd}", "-o", 'jsonpath={.status.conditions[?(@.type=="Established")].status}'
        ).stdout
        assert established == "True"


def test_crd_files_are_one_per_kind_with_short_names_and_category() -> None:
    files = {p.name: yaml.safe_load(p.read_text()) for p in CRDS.glob("*.yaml")}
    assert set(files) == {"configrefresh.io_configroutes.yaml", "configrefresh.io_configrefreshes.yaml"}
    names = {doc["spec"]["names"]["kind"]: doc["spec"]["names"] for doc in files.values()}
    assert names["ConfigRoute"]["shortNames"] == ["cfgroute"]
    assert names["ConfigRefresh"]["shortNames"] == ["cfgr"]
    assert all(n["categories"] == ["config-refresh"] for n in names.values())


def _schema_nodes(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _schema_nodes(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schema_nodes(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("crd_file", sorted(CRDS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_schema_field_has_a_description_and_nothing_is_left_open(crd_file: Path) -> None:
    doc = yaml.safe_load(crd_file.read_text())
    schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    undocumented = [p for p, n in _schema_nodes(schema, "") if p != ".metadata" and not n.get("description")]
    assert undocumented == []
    assert "x-kubernetes-preserve-unknown-fields" not in crd_file.read_text()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_each_sample_applies(control_plane: ControlPlane, kube_namespace: str, sample: Path) -> None:
    out = control_plane.kubectl("apply", "-n", kube_namespace, "-f", str(sample)).stdout
    assert "created" in out
    doc = yaml.safe_load(sample.read_text())
    stored = _get(control_plane, kube_namespace, f"{doc['kind'].lower()}/{doc['metadata']['name']}")
    assert stored["spec"]["parameterPrefix" if doc["kind"] == "ConfigRoute" else "parameter"]


def test_samples_cover_both_kinds_and_pod_sync() -> None:
    docs = [yaml.safe_load(p.read_text()) for p in SAMPLES]
    assert {d["kind"] for d in docs} == {"ConfigRoute", "ConfigRefresh"}
    assert any("podSync" in d["spec"] for d in docs)


# ------------------------------------------------------------------------------------------------ defaults


def test_route_defaults_are_filled_in_by_the_api_server(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    _apply(control_plane, kube_namespace, _route())
    refresh = _get(control_plane, kube_namespace, "configroute/orders")["spec"]["refresh"]
    assert refresh == {
        "timeoutSeconds": 2,
        "maxConcurrency": 64,
        "maxAttempts": 3,
        "deadlineSeconds": 300,
        "payload": "value",
        "insecureAllowPlaintext": False,
        "tls": {"enabled": False},
        "auth": {"type": "none"},
    }


def test_refresh_defaults_are_filled_in_by_the_api_server(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    _apply(control_plane, kube_namespace, _refresh())
    spec = _get(control_plane, kube_namespace, "configrefresh/orders-db-url-v7")["spec"]
    assert spec["parameter"]["operation"] == "Upsert"
    assert spec["parameter"]["type"] == "String"
    assert spec["source"] == {"trigger": "manual"}


# ------------------------------------------------------------------------------------------ invalid objects

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = obj
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = obj
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


INVALID = [
    # (id, base object, mutation, field the error must name, words the error must contain)
    ("missing prefix", _route(), _delete("spec.parameterPrefix"), "spec.parameterPrefix", "Required value"),
    (
        "prefix is just a slash",
        _route(),
        _set("spec.parameterPrefix", "/"),
        "spec.parameterPrefix",
        'just "/"',
    ),
    (
        "prefix with a dot-dot segment",
        _route(),
        _set("spec.parameterPrefix", "/config-service/../"),
        "spec.parameterPrefix",
        '".." path segment',
    ),
    (
        "prefix without slash",
        _route(),
        _set("spec.parameterPrefix", "orders/"),
        "spec.parameterPrefix",
        'with "/"',
    ),
    (
        "negative concurrency",
        _route(),
        _set("spec.refresh.maxConcurrency", -1),
        "spec.refresh.maxConcurrency",
        "greater than or equal to 1",
    ),
    (
        "concurrency above 10000",
        _route(),
        _set("spec.refresh.maxConcurrency", 10001),
        "spec.refresh.maxConcurrency",
        "less than or equal to 10000",
    ),
    (
        "unknown payload mode",
        _route(),
        _set("spec.refresh.payload", "push"),
        "spec.refresh.payload",
        'Unsupported value: "push"',
    ),
    (
        "concurrency of wrong type",
        _route(),
        _set("spec.refresh.maxConcurrency", "many"),
        "spec.refresh.maxConcurrency",
        "must be of type integer",
    ),
    (
        "bad auth type",
        _route(),
        _set("spec.refresh.auth.type", "mtls"),
        "spec.refresh.auth.type",
        "Unsupported value",
    ),
    (
        "scope pattern too long",
        _route(),
        _set("spec.scopePattern", "^/" + "a" * 511),
        "spec.scopePattern",
        "512",
    ),
    (
        "pod sync without port",
        _route(),
        _set("spec.podSync", {"selector": {"matchLabels": {"app": "orders"}}}),
        "spec.podSync.port",
        "Required value",
    ),
    (
        "templated query without scope pattern",
        _route(),
        _set("spec.discovery.cloudMap.queryParameters", {"tenant": "{tenant}"}),
        "spec.scopePattern",
        "scopePattern",
    ),
    (
        "timeout longer than deadline",
        _route(),
        _set("spec.refresh", {"timeoutSeconds": 30, "deadlineSeconds": 10}),
        "spec.refresh",
        "must not exceed deadlineSeconds",
    ),
    (
        "server name without tls",
        _route(),
        _set("spec.refresh.tls", {"serverName": "orders.internal"}),
        "spec.refresh.tls",
        "enabled",
    ),
    (
        "caBundle without TLS",
        _route(),
        _set("spec.refresh.tls", {"caBundle": "LS0tLS1CRUdJTg=="}),
        "spec.refresh.tls",
        "caBundle needs enabled",
    ),
    (
        "caBundle not base64",
        _route(),
        _set("spec.refresh.tls", {"enabled": True, "caBundle": "not base64!"}),
        "spec.refresh.tls.caBundle",
        "",
    ),
    (
        "unknown field",
        _route(),
        _set("spec.refresh.concurrency", 5),
        "spec.refresh.concurrency",
        "unknown field",
    ),
    ("missing route", _refresh(), _delete("spec.route"), "spec.route", "Required value"),
    (
        "bad operation enum",
        _refresh(),
        _set("spec.parameter.operation", "Update"),
        "spec.parameter.operation",
        'Unsupported value: "Update"',
    ),
    (
        "bad parameter type enum",
        _refresh(),
        _set("spec.parameter.type", "Secret"),
        "spec.parameter.type",
        "Unsupported value",
    ),
    (
        "relative parameter name",
        _refresh(),
        _set("spec.parameter.name", "orders/db_url"),
        "spec.parameter.name",
        'start with "/"',
    ),
    (
        "version of wrong type",
        _refresh(),
        _set("spec.parameter.version", "seven"),
        "spec.parameter.version",
        "must be of type integer",
    ),
    (
        "version zero",
        _refresh(),
        _set("spec.parameter.version", 0),
        "spec.parameter.version",
        "greater than or equal",
    ),
    (
        "event trigger without event id",
        _refresh(),
        _set("spec.source", {"trigger": "event"}),
        "spec.source.eventId",
        "eventId is required",
    ),
    (
        "bad trigger enum",
        _refresh(),
        _set("spec.source.trigger", "cron"),
        "spec.source.trigger",
        "Unsupported value",
    ),
]


@pytest.mark.parametrize(
    ("base", "mutate", "field", "words"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_object_is_rejected_naming_the_field(
    control_plane: ControlPlane,
    kube_namespace: str,
    base: dict[str, Any],
    mutate: Mutation,
    field: str,
    words: str,
) -> None:
    obj = copy.deepcopy(base)
    mutate(obj)
    proc = control_plane.kubectl("apply", "-n", kube_namespace, "-f", "-", input=json.dumps(obj), check=False)
    assert proc.returncode != 0, proc.stdout
    assert field in proc.stderr
    assert words in proc.stderr


def test_status_rejects_an_unknown_phase(control_plane: ControlPlane, kube_namespace: str) -> None:
    _apply(control_plane, kube_namespace, _refresh())
    proc = _patch(control_plane, kube_namespace, {"status": {"phase": "Done"}}, status=True, check=False)
    assert proc.returncode != 0
    assert "status.phase" in proc.stderr
    assert 'Unsupported value: "Done"' in proc.stderr


def test_conditions_are_a_list_keyed_by_type(control_plane: ControlPlane, kube_namespace: str) -> None:
    _apply(control_plane, kube_namespace, _refresh())
    twice = [_condition("Ready", "True", "Done"), _condition("Ready", "False", "Failing")]
    proc = _patch(control_plane, kube_namespace, {"status": {"conditions": twice}}, status=True, check=False)
    assert proc.returncode != 0
    assert "status.conditions" in proc.stderr
    assert "Duplicate value" in proc.stderr


def test_parameter_and_route_of_a_refresh_are_immutable(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    _apply(control_plane, kube_namespace, _refresh())
    for patch, message in (
        ({"spec": {"parameter": {"version": 8}}}, "parameter is immutable"),
        ({"spec": {"route": "payments"}}, "route is immutable"),
    ):
        proc = _patch(control_plane, kube_namespace, patch, check=False)
        assert proc.returncode != 0
        assert message in proc.stderr


# ------------------------------------------------------------------------------------ what kubectl shows


def test_get_configrefresh_shows_the_patched_status_in_columns(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    _apply(control_plane, kube_namespace, _refresh())
    _patch_status(
        control_plane,
        kube_namespace,
        "configrefresh/orders-db-url-v7",
        {
            "phase": "PartiallyFailed",
            "targets": 50,
            "refreshed": 48,
            "failed": 2,
            "stale": 0,
            "gone": 1,
            "progress": "48/50",
            "latencyMs": 412,
            "startedAt": "2026-11-26T10:00:00Z",
            "completedAt": "2026-11-26T10:00:01Z",
            "instances": [
                {
                    "id": "orders-7d9f-abc",
                    "address": "10.1.2.3:50051",
                    "result": "Failed",
                    "attempts": 3,
                    "error": "DEADLINE_EXCEEDED",
                },
                {
                    "id": "orders-7d9f-def",
                    "address": "10.1.2.4:50051",
                    "result": "Gone",
                    "attempts": 3,
                    "error": "deregistered during the rollout",
                },
            ],
            "instancesTruncated": True,
            "observedGeneration": 1,
            "conditions": [_condition("Ready", "False", "InstancesFailed")],
        },
    )
    rows = _table(control_plane.kubectl("get", "-n", kube_namespace, "configrefresh").stdout)
    assert len(rows) == 1
    row = rows[0]
    assert list(row) == ["NAME", "PARAMETER", "VERSION", "PHASE", "REFRESHED", "FAILED", "LATENCY", "AGE"]
    assert row["NAME"] == "orders-db-url-v7"
    assert row["PARAMETER"] == "/orders/acme/db_url"
    assert row["VERSION"] == "7"
    assert row["PHASE"] == "PartiallyFailed"
    assert row["REFRESHED"] == "48/50"
    assert row["FAILED"] == "2"
    assert row["LATENCY"] == "412"

    wide = _table(control_plane.kubectl("get", "-n", kube_namespace, "configrefresh", "-o", "wide").stdout)[0]
    assert wide["ROUTE"] == "orders"
    assert wide["TRIGGER"] == "manual"
    assert wide["STALE"] == "0"
    stored = json.loads(
        control_plane.kubectl(
            "get", "-n", kube_namespace, "configrefresh", "orders-db-url-v7", "-o", "json"
        ).stdout
    )["status"]
    assert stored["gone"] == 1  # a field of the schema: not pruned
    assert [entry["result"] for entry in stored["instances"]] == ["Failed", "Gone"]


def test_get_configroute_shows_prefix_service_instances_and_ready(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    _apply(control_plane, kube_namespace, _route())
    _patch_status(
        control_plane,
        kube_namespace,
        "configroute/orders",
        {
            "registered": 3,
            "healthy": 2,
            "observedGeneration": 1,
            "conditions": [_condition("Ready", "True", "Ok")],
        },
    )
    row = _table(control_plane.kubectl("get", "-n", kube_namespace, "cfgroute").stdout)[0]
    assert list(row) == ["NAME", "PREFIX", "SERVICE", "INSTANCES", "READY", "AGE"]
    assert (row["PREFIX"], row["SERVICE"], row["INSTANCES"], row["READY"]) == (
        "/orders/",
        "orders",
        "3",
        "True",
    )
    wide = _table(control_plane.kubectl("get", "-n", kube_namespace, "cfgroute", "-o", "wide").stdout)[0]
    assert wide["HEALTHY"] == "2"
    assert wide["PAYLOAD"] == "value"


def test_short_names_cfgr_and_cfgroute_work_together(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    _apply(control_plane, kube_namespace, _route())
    _apply(control_plane, kube_namespace, _refresh())
    names = control_plane.kubectl("get", "-n", kube_namespace, "cfgr,cfgroute", "-o", "name").stdout.split()
    assert sorted(names) == [
        "configrefresh.configrefresh.io/orders-db-url-v7",
        "configroute.configrefresh.io/orders",
    ]


def test_category_lists_both_kinds_while_configrefresh_means_one(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    _apply(control_plane, kube_namespace, _route())
    _apply(control_plane, kube_namespace, _refresh())
    both = control_plane.kubectl("get", "-n", kube_namespace, "config-refresh", "-o", "name").stdout.split()
    assert sorted(both) == [
        "configrefresh.configrefresh.io/orders-db-url-v7",
        "configroute.configrefresh.io/orders",
    ]
    one = control_plane.kubectl("get", "-n", kube_namespace, "configrefresh", "-o", "name").stdout.split()
    assert one == ["configrefresh.configrefresh.io/orders-db-url-v7"]


def test_explain_prints_the_field_descriptions(control_plane: ControlPlane) -> None:
    control_plane.ensure_crds()
    out = control_plane.kubectl("explain", "configrefresh.spec.parameter").stdout
    assert "Full Parameter Store name" in out
    assert 'If unset, defaults to "Upsert"' in " ".join(out.split())
    assert "enum: Upsert, Delete" in out
    out = control_plane.kubectl("explain", "configroute.spec.refresh.maxConcurrency").stdout
    assert "If unset, defaults to 64" in " ".join(out.split())


# ------------------------------------------------------------------------------------- spec versus status


def test_status_patch_does_not_change_spec(control_plane: ControlPlane, kube_namespace: str) -> None:
    _apply(control_plane, kube_namespace, _refresh())
    before = _get(control_plane, kube_namespace, "configrefresh/orders-db-url-v7")
    both = {"spec": {"scope": {"tenant": "globex"}}, "status": {"phase": "InProgress"}}
    _patch(control_plane, kube_namespace, both, status=True)
    after = _get(control_plane, kube_namespace, "configrefresh/orders-db-url-v7")
    assert after["status"]["phase"] == "InProgress"
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_spec_update_does_not_change_status(control_plane: ControlPlane, kube_namespace: str) -> None:
    _apply(control_plane, kube_namespace, _refresh())
    _patch_status(control_plane, kube_namespace, "configrefresh/orders-db-url-v7", {"phase": "InProgress"})
    before = _get(control_plane, kube_namespace, "configrefresh/orders-db-url-v7")
    _patch(
        control_plane,
        kube_namespace,
        {"spec": {"scope": {"tenant": "globex"}}, "status": {"phase": "Failed"}},
    )
    after = _get(control_plane, kube_namespace, "configrefresh/orders-db-url-v7")
    assert after["spec"]["scope"] == {"tenant": "globex"}
    assert after["status"] == before["status"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1


# ------------------------------------------------------------------------------------ viewer/editor roles


def test_viewer_and_editor_roles_grant_what_their_headers_say(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    control_plane.kubectl("apply", "-f", str(CRDS / "rbac"))
    kubeconfigs = {}
    for role in ("viewer", "editor"):
        control_plane.kubectl(
            "create", "rolebinding", role, "-n", kube_namespace, f"--clusterrole=configrefresh-{role}",
            f"--serviceaccount={kube_namespace}:{role}",
        )  # fmt: skip
        kubeconfigs[role] = control_plane.kubeconfig_for_token(
            control_plane.issue_token(kube_namespace, role)
        )

    def can(role: str, verb: str, resource: str, subresource: str = "") -> bool:
        proc = control_plane.kubectl(
            "auth", "can-i", verb, f"{resource}.configrefresh.io", "-n", kube_namespace,
            f"--subresource={subresource}", kubeconfig=kubeconfigs[role], check=False,
        )  # fmt: skip
        return proc.stdout.strip() == "yes"

    deadline = time.monotonic() + 30
    while not (can("viewer", "list", "configrefreshes") and can("editor", "create", "configroutes")):
        assert time.monotonic() < deadline, "RoleBindings never took effect"
        time.sleep(0.2)
    for resource in ("configroutes", "configrefreshes"):
        assert [can("viewer", v, resource) for v in ("get", "list", "watch")] == [True, True, True]
        assert [can("viewer", v, resource) for v in ("create", "patch", "delete")] == [False, False, False]
        assert [can("editor", v, resource) for v in ("create", "patch", "delete")] == [True, True, True]
        assert can("viewer", "get", resource, "status")
        assert not can("editor", "patch", resource, "status")
        assert not can("viewer", "patch", resource, "status")
