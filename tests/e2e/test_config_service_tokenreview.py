"""RefreshService authenticated with Kubernetes ServiceAccount tokens, checked by TokenReview on a real
kube-apiserver; the service itself calls TokenReview as a least-privileged ServiceAccount. Audiences are
per service (a token for one is refused by another), and a flood of bogus tokens costs a bounded number
of TokenReview calls (counted by the service's own metrics)."""

from __future__ import annotations

import concurrent.futures
import secrets
import time

import grpc

from configrefresh.v1 import config_service_pb2 as cpb
from configrefresh.v1 import config_service_pb2_grpc as cpb_grpc
from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.fixtures.services import FleetFactory
from devstack.services.fleet import ServiceFleet

AUDIENCE = "config-service"


def get_state_code(address: str, token: str | None) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    with grpc.insecure_channel(address) as channel:
        try:
            pb_grpc.RefreshServiceStub(channel).GetState(pb.GetStateRequest(), timeout=20, metadata=metadata)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_serviceaccount_tokens_are_checked_with_tokenreview(
    control_plane: ControlPlane, kube_namespace: str, local_aws: LocalAws, tokenreview_fleet: FleetFactory
) -> None:
    namespace = kube_namespace
    # The service's own identity may create TokenReviews and nothing else (system:auth-delegator).
    fleet = tokenreview_fleet(1, audience=AUDIENCE)
    address = fleet[0].refresh_address

    operator_token = control_plane.issue_token(namespace, "operator", audiences=[AUDIENCE])
    intruder_token = control_plane.issue_token(namespace, "intruder", audiences=[AUDIENCE])
    wrong_audience = control_plane.issue_token(
        namespace, "operator", audiences=["https://kubernetes.default.svc"]
    )

    assert get_state_code(address, operator_token) is grpc.StatusCode.OK
    assert get_state_code(address, intruder_token) is grpc.StatusCode.PERMISSION_DENIED
    assert get_state_code(address, wrong_audience) is grpc.StatusCode.UNAUTHENTICATED
    assert get_state_code(address, "not-a-token") is grpc.StatusCode.UNAUTHENTICATED
    assert get_state_code(address, None) is grpc.StatusCode.UNAUTHENTICATED

    name = f"{local_aws.prefix}acme/orders/flag"
    refresh = pb.RefreshRequest(parameter_name=name, version=1, operation=pb.OPERATION_UPSERT, value="on")
    with grpc.insecure_channel(address) as channel:
        answer = pb_grpc.RefreshServiceStub(channel).Refresh(
            refresh, timeout=20, metadata=(("authorization", f"Bearer {operator_token}"),)
        )
    assert answer.result == pb.REFRESH_RESULT_APPLIED
    assert fleet[0].get_config(name).value == "on"
    log = fleet[0].log_text()
    assert operator_token not in log
    assert intruder_token not in log


def counter(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus counter in a scrape (0 when absent)."""
    wanted = name + "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"
    for line in metrics.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_token_for_one_service_is_refused_by_another_and_a_flood_of_bogus_tokens_is_bounded(
    control_plane: ControlPlane, kube_namespace: str, tokenreview_fleet: FleetFactory
) -> None:
    namespace = kube_namespace
    audience_a = f"configrefresh.io/{namespace}/orders"
    audience_b = f"configrefresh.io/{namespace}/billing"
    rate, burst = 5, 10

    def fleet_for(audience: str) -> ServiceFleet:
        limits = {
            "CONFIG_SERVICE_TOKENREVIEW_RATE": str(rate),
            "CONFIG_SERVICE_TOKENREVIEW_BURST": str(burst),
        }
        return tokenreview_fleet(1, audience=audience, env=limits)

    service_a = fleet_for(audience_a)[0]
    service_b = fleet_for(audience_b)[0]

    # A token captured at service A is useless at service B, and the other way round.
    token_a = control_plane.issue_token(namespace, "operator", audiences=[audience_a])
    token_b = control_plane.issue_token(namespace, "operator", audiences=[audience_b])
    assert get_state_code(service_a.refresh_address, token_a) is grpc.StatusCode.OK
    assert get_state_code(service_b.refresh_address, token_a) is grpc.StatusCode.UNAUTHENTICATED
    assert get_state_code(service_b.refresh_address, token_b) is grpc.StatusCode.OK
    assert get_state_code(service_a.refresh_address, token_b) is grpc.StatusCode.UNAUTHENTICATED
    # The API server itself refuses a token whose audiences do not meet the review's audience.
    assert "ServiceAccount token not authenticated" in service_b.log_text()

    # 1,000 distinct bogus tokens, 50 at a time: TokenReview calls stay within the bucket.
    before = counter(service_a.metrics_text(), "config_service_tokenreviews_total", outcome="called")
    started = time.monotonic()
    codes: list[grpc.StatusCode] = []
    with grpc.insecure_channel(service_a.refresh_address) as channel:
        stub = pb_grpc.RefreshServiceStub(channel)

        def attempt(index: int) -> grpc.StatusCode:
            try:
                stub.GetState(
                    pb.GetStateRequest(),
                    timeout=30,
                    metadata=(("authorization", f"Bearer bogus-{index}-{secrets.token_urlsafe(8)}"),),
                )
            except grpc.RpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            codes = list(pool.map(attempt, range(1000)))
    elapsed = time.monotonic() - started
    scrape = service_a.metrics_text()
    called = counter(scrape, "config_service_tokenreviews_total", outcome="called") - before
    limited = counter(scrape, "config_service_tokenreviews_total", outcome="rate_limited")
    assert grpc.StatusCode.OK not in codes
    assert set(codes) <= {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE}
    assert called <= burst + rate * elapsed + 1, (called, elapsed)
    assert called >= 1
    assert limited >= 1000 - called - 1
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == called

    # One bogus token sent 200 times at once is one TokenReview at most (single flight, then the cache);
    # wait for the bucket to hold a token again first, so the call is made rather than refused.
    time.sleep(1.0 / rate + 0.1)
    before = counter(service_a.metrics_text(), "config_service_tokenreviews_total", outcome="called")
    same = f"bogus-{secrets.token_urlsafe(16)}"
    with grpc.insecure_channel(service_a.refresh_address) as channel:
        stub = pb_grpc.RefreshServiceStub(channel)

        def same_token(_: int) -> grpc.StatusCode:
            try:
                stub.GetState(
                    pb.GetStateRequest(), timeout=30, metadata=(("authorization", f"Bearer {same}"),)
                )
            except grpc.RpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            same_codes = list(pool.map(same_token, range(200)))
    after = counter(service_a.metrics_text(), "config_service_tokenreviews_total", outcome="called")
    assert after - before == 1
    assert set(same_codes) == {grpc.StatusCode.UNAUTHENTICATED}
    # The operator's own token still works (it is cached), flood or not.
    assert get_state_code(service_a.refresh_address, token_a) is grpc.StatusCode.OK


def test_config_reads_take_serviceaccount_tokens_of_the_allowed_namespace_only(
    control_plane: ControlPlane, kube_namespace: str, local_aws: LocalAws, tokenreview_fleet: FleetFactory
) -> None:
    namespace = kube_namespace
    audience = f"configrefresh.io/{namespace}/orders"
    other = control_plane.create_namespace(f"{namespace}-x")
    try:
        local_aws.client("ssm").put_parameter(
            Name=f"{local_aws.prefix}acme/db/password", Value="s3cret", Type="SecureString"
        )
        groups = {"CONFIG_SERVICE_CONFIG_TOKENREVIEW_ALLOWED_GROUPS": f"system:serviceaccounts:{namespace}"}
        instance = tokenreview_fleet(1, audience=audience, env=groups)[0]
        app = control_plane.issue_token(namespace, "orders", audiences=[audience])
        stranger = control_plane.issue_token(other, "orders", audiences=[audience])
        operator = control_plane.issue_token(namespace, "operator", audiences=[audience])

        def list_code(token: str | None) -> tuple[grpc.StatusCode, list[str]]:
            metadata = (("authorization", f"Bearer {token}"),) if token else ()
            with grpc.insecure_channel(instance.config_address) as channel:
                try:
                    answer = cpb_grpc.ConfigServiceStub(channel).ListConfig(
                        cpb.ListConfigRequest(prefix=""), timeout=20, metadata=metadata
                    )
                except grpc.RpcError as error:
                    return error.code(), []
            return grpc.StatusCode.OK, [entry.value for entry in answer.entries]

        assert list_code(app) == (grpc.StatusCode.OK, ["s3cret"])
        assert list_code(stranger) == (grpc.StatusCode.PERMISSION_DENIED, [])
        assert list_code(None) == (grpc.StatusCode.UNAUTHENTICATED, [])
        assert list_code("not-a-token") == (grpc.StatusCode.UNAUTHENTICATED, [])
        # Each port keeps its own allow-list: an application token cannot push refreshes.
        assert get_state_code(instance.refresh_address, app) is grpc.StatusCode.PERMISSION_DENIED
        assert get_state_code(instance.refresh_address, operator) is grpc.StatusCode.OK
        log = instance.log_text()
        assert "s3cret" not in log
        assert app not in log
        assert stranger not in log
    finally:
        control_plane.kubectl("delete", "namespace", other, "--wait=false", check=False)
