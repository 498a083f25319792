"""Issue 17 on the real stack: each attack on the refresh channel and the namespace boundary fails.

Real kube-apiserver, the operator as a process, real config_service processes, moto for AWS. Each test
also runs the legitimate path beside the attack, so a refusal cannot pass by the stack simply not working.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import grpc
import pytest

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from devstack.services.fleet import ServiceFleet
from devstack.stack.builder import Stack
from devstack.stack.kube import apply, get_json, refreshes, route_object, wait_for, wait_route_ready
from refresh_operator.routes import route_from_object

if TYPE_CHECKING:
    from devstack.aws.local_aws import LocalAws
    from devstack.controlplane.plane import ControlPlane
    from devstack.fixtures.services import FleetFactory
    from devstack.stack.operator import OperatorProcess

FINAL = {"Succeeded", "PartiallyFailed", "Failed"}


def ready_condition(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    obj = get_json(control_plane, "configroute", name, "-n", namespace)
    if (obj.get("status") or {}).get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return dict(condition)
    return None


def wait_refused(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    def refused() -> dict[str, Any] | None:
        condition = ready_condition(control_plane, namespace, name)
        return condition if condition is not None and condition["status"] == "False" else None

    found: dict[str, Any] = wait_for(refused, timeout=60, what=f"ConfigRoute {name} refused")
    return found


def routes_of(control_plane: ControlPlane, namespace: str, route: str) -> list[dict[str, Any]]:
    return [item for item in refreshes(control_plane, namespace) if item["spec"]["route"] == route]


@pytest.mark.parametrize("auth", ["serviceAccountToken", "bearerToken"])
def test_a_plaintext_route_with_a_bearer_token_is_not_ready_and_rolls_nothing(
    stack: Stack, auth: str
) -> None:
    prefix = f"{stack.local_aws.prefix}tokened/"
    route = route_object("tokened", local_aws=stack.local_aws, prefix=prefix)
    route["spec"]["refresh"]["auth"] = {"type": auth}
    apply(stack.control_plane, stack.namespace, route)
    condition = wait_refused(stack.control_plane, stack.namespace, "tokened")
    assert condition["reason"] == "PlaintextCredentials"
    assert "tls.enabled" in condition["message"]
    assert "insecureAllowPlaintext" in condition["message"]

    # The same change reaches the fleet through the plain, tokenless route "services" (the control) ...
    name = f"{prefix}db_url"
    version = stack.put(name, "v1")
    done = stack.wait_phase(name, version, FINAL)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    # ... and nothing was rolled out through the refused route.
    assert routes_of(stack.control_plane, stack.namespace, "tokened") == []


def test_a_secure_string_on_a_plaintext_route_travels_as_an_invalidation(stack: Stack) -> None:
    condition = ready_condition(stack.control_plane, stack.namespace, stack.route)
    assert condition is not None
    assert "SecureStrings are pushed as invalidate" in condition["message"]
    name = f"{stack.local_aws.prefix}secret/api_key"
    version = stack.put(name, "s3cr3t", kind="SecureString")
    done = stack.wait_phase(name, version, FINAL)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    # Every instance holds the secret: it re-read it from Parameter Store with its own credentials.
    assert stack.values(name) == [("s3cr3t", version)] * len(stack.fleet)
    # ... and it was told to re-read (mode invalidate), never sent the value.
    sample = 'config_service_refreshes_total{mode="invalidate",result="applied"}'
    for instance in stack.fleet:
        lines = [line for line in instance.metrics_text().splitlines() if line.startswith(sample)]
        assert lines, f"{instance.instance_id} applied no invalidation"
        assert float(lines[0].split()[-1]) >= 1


def test_a_route_claiming_another_namespaces_prefix_gets_a_condition_and_no_rollout(
    control_plane: ControlPlane,
    local_aws: LocalAws,
    kube_namespace: str,
    service_fleet: Callable[..., Any],
    operator_process: Callable[..., OperatorProcess],
) -> None:
    fleet = service_fleet(2, local_aws=local_aws)
    for instance in fleet:
        local_aws.register_instance(instance.instance_id, instance.host, instance.refresh_port)
    ours, theirs = f"{local_aws.prefix}team-b/", f"{local_aws.prefix}team-a/"
    allowances = {kube_namespace: [ours], "team-a": [theirs]}
    apply(control_plane, kube_namespace, route_object("ours", local_aws=local_aws, prefix=ours))
    apply(control_plane, kube_namespace, route_object("theirs", local_aws=local_aws, prefix=theirs))
    operator = operator_process(CONFIG_REFRESH_ALLOWED_PREFIXES=json.dumps(allowances))
    wait_route_ready(control_plane, kube_namespace, "ours")
    condition = wait_refused(control_plane, kube_namespace, "theirs")
    assert condition["reason"] == "PrefixNotAllowed"
    assert theirs in condition["message"]

    stack = Stack(
        control_plane=control_plane,
        local_aws=local_aws,
        namespace=kube_namespace,
        fleet=fleet,
        route="ours",
        operator=operator,
    )
    unrouted = stack.metric('config_refresh_events_received_total{outcome="unrouted"}')
    stolen = f"{theirs}db_password"
    stack.put(stolen, "team-a-secret", kind="SecureString")
    wait_for(
        lambda: stack.metric('config_refresh_events_received_total{outcome="unrouted"}') > unrouted,
        timeout=60,
        what="the event for team-a's parameter consumed as unrouted",
    )
    assert stack.refreshes_of(stolen) == []
    assert [value for value, _ in stack.values(stolen)] == ["<missing>"] * len(fleet)
    # The allowed route works (the control).
    version = stack.put(f"{ours}db_url", "ours")
    assert stack.wait_phase(f"{ours}db_url", version, FINAL)["status"]["phase"] == "Succeeded"


def test_discovery_skips_the_instances_of_another_namespace(stack: Stack) -> None:
    foreign = stack.fleet.instances[:3]
    for instance in foreign:
        stack.local_aws.register_instance(
            instance.instance_id,
            instance.host,
            instance.refresh_port,
            attributes={"k8s-namespace": "team-a"},
        )
    name = f"{stack.local_aws.prefix}owned/db_url"
    version = stack.put(name, "mine-only")
    done = stack.wait_phase(name, version, FINAL)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["targets"] == len(stack.fleet) - len(foreign)
    held = dict(zip((i.instance_id for i in stack.fleet), stack.values(name), strict=True))
    assert all(held[i.instance_id] == ("<missing>", 0) for i in foreign)
    assert sum(value == ("mine-only", version) for value in held.values()) == len(stack.fleet) - len(foreign)
    reasons = {event["reason"] for event in stack.events_for(done["metadata"]["name"])}
    assert "ForeignInstancesSkipped" in reasons


def test_a_health_gate_aimed_at_the_instance_metadata_address_is_refused(
    control_plane: ControlPlane,
    local_aws: LocalAws,
    kube_namespace: str,
    operator_process: Callable[..., OperatorProcess],
) -> None:
    route = route_object("gated", local_aws=local_aws, prefix=local_aws.prefix)
    route["spec"]["rollout"] = {
        "waves": ["1", "100%"],
        "healthGate": {"url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"},
    }
    apply(control_plane, kube_namespace, route)
    # Even an admin who lists the address by mistake does not open it: link-local is never fetched.
    operator_process(CONFIG_REFRESH_HEALTH_GATE_HOSTS="*.svc,169.254.169.254")
    condition = wait_refused(control_plane, kube_namespace, "gated")
    assert condition["reason"] == "HealthGateNotAllowed"
    assert "link-local" in condition["message"]


def test_the_backtracking_pattern_routes_a_crafted_name_in_linear_time_while_the_operator_stays_live(
    stack: Stack,
) -> None:
    prefix = f"{stack.local_aws.prefix}hostile/"
    route = route_object("hostile", local_aws=stack.local_aws, prefix=prefix)
    route["spec"]["scopePattern"] = f"^{prefix}(?P<tenant>(q+q+)+)/x$"
    apply(stack.control_plane, stack.namespace, route)
    wait_route_ready(stack.control_plane, stack.namespace, "hostile")

    # The match itself, with the operator's own code on the route as the API server stored it: Python's
    # re needs 0.18 s for 22 q's and doubles with each one; RE2 is linear.
    stored = get_json(stack.control_plane, "configroute", "hostile", "-n", stack.namespace)
    compiled = route_from_object(stored).scope_pattern
    assert compiled is not None
    crafted = prefix + "q" * (10_000 - len(prefix) - 1) + "!"
    assert len(crafted) == 10_000
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        assert compiled.search(crafted) is None
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.010, f"10 kB match took {min(timings) * 1000:.2f} ms at best"

    # The operator meets the longest crafted name Parameter Store accepts (2,048 characters) ...
    hostile = prefix + "q" * (2048 - len(prefix) - 1) + "!"
    created = stack.metric('config_refresh_events_received_total{outcome="created"}')
    stack.send_event(hostile)
    # ... and stays live: its probe answers and the next ordinary change rolls out at once.
    name = f"{stack.local_aws.prefix}after/hostile"
    version = stack.put(name, "still-live")
    done = stack.wait_phase(name, version, FINAL, timeout=60)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert stack.metric('config_refresh_events_received_total{outcome="created"}') > created
    assert stack.operator.returncode is None


@pytest.mark.timeout(600)
def test_a_token_taken_from_service_a_is_refused_by_service_b(
    control_plane: ControlPlane,
    local_aws: LocalAws,
    kube_namespace: str,
    tokenreview_fleet: FleetFactory,
    operator_process: Callable[..., OperatorProcess],
) -> None:
    audiences = {"a": "configrefresh.io/test/service-a", "b": "configrefresh.io/test/service-b"}
    # One config-service per audience, over TLS, accepting the operator's ServiceAccount tokens for it only.
    fleets = {key: tokenreview_fleet(1, audience=audience, tls=True) for key, audience in audiences.items()}
    control_plane.issue_token(kube_namespace, "operator")  # creates the operator's ServiceAccount
    for key, fleet in fleets.items():
        instance = fleet[0]
        ca_file = fleet.credentials.ca_file
        assert ca_file is not None  # tls=True
        local_aws.register_instance(
            instance.instance_id, instance.host, instance.refresh_port, attributes={"svc": key}
        )
        route = route_object(f"route-{key}", local_aws=local_aws, prefix=f"{local_aws.prefix}{key}/")
        route["spec"]["discovery"]["cloudMap"]["queryParameters"] = {"svc": key}
        route["spec"]["refresh"]["auth"] = {"type": "serviceAccountToken", "audience": audiences[key]}
        route["spec"]["refresh"]["tls"] = {
            "enabled": True,
            "serverName": "config-service.local",
            "caBundle": base64.b64encode(ca_file.read_bytes()).decode(),
        }
        apply(control_plane, kube_namespace, route)
    operator = operator_process(
        CONFIG_REFRESH_SERVICE_ACCOUNT_NAME="operator",
        CONFIG_REFRESH_SERVICE_ACCOUNT_NAMESPACE=kube_namespace,
    )
    for key in audiences:
        wait_route_ready(control_plane, kube_namespace, f"route-{key}")
    stack = Stack(
        control_plane=control_plane,
        local_aws=local_aws,
        namespace=kube_namespace,
        # One instance of each fleet: this Stack only iterates and counts its fleet (it started no parts, so
        # stop() closes nothing), which a list of the two does as a ServiceFleet would.
        fleet=cast(ServiceFleet, [fleets["a"][0], fleets["b"][0]]),
        route="route-a",
        operator=operator,
    )
    # The operator reaches each service with a token minted for that service (TokenRequest) over TLS.
    for key in audiences:
        name = f"{local_aws.prefix}{key}/db_url"
        version = stack.put(name, f"for-{key}")
        done = stack.wait_phase(name, version, FINAL, timeout=120)
        assert done["status"]["phase"] == "Succeeded", done["status"]

    # A token as the operator sends it to A (same account, A's audience), replayed to B, is refused.
    captured = control_plane.issue_token(kube_namespace, "operator", audiences=[audiences["a"]], create=False)
    own = control_plane.issue_token(kube_namespace, "operator", audiences=[audiences["b"]], create=False)

    def get_state(instance: Any, token: str) -> grpc.StatusCode:
        stub = pb_grpc.RefreshServiceStub(instance.refresh_channel())
        try:
            stub.GetState(
                pb.GetStateRequest(name_prefix=local_aws.prefix),
                timeout=10,
                metadata=(("authorization", f"Bearer {token}"),),
            )
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    assert get_state(fleets["b"][0], captured) is grpc.StatusCode.UNAUTHENTICATED
    assert get_state(fleets["a"][0], captured) is grpc.StatusCode.OK
    assert get_state(fleets["b"][0], own) is grpc.StatusCode.OK
