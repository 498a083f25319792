"""RefreshService authenticated with Kubernetes ServiceAccount tokens, checked by TokenReview on a real
kube-apiserver; the service itself calls TokenReview as a least-privileged ServiceAccount."""

from __future__ import annotations

import json

import grpc

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from devstack.controlplane import ControlPlane
from devstack.local_aws import LocalAws
from devstack.pytest_services import FleetFactory

AUDIENCE = "config-service"


def get_state_code(address: str, token: str | None) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    with grpc.insecure_channel(address) as channel:
        try:
            pb_grpc.RefreshServiceStub(channel).GetState(pb.GetStateRequest(), timeout=20, metadata=metadata)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def test_serviceaccount_tokens_are_checked_with_tokenreview(
    control_plane: ControlPlane, kube_namespace: str, local_aws: LocalAws, service_fleet: FleetFactory
) -> None:
    namespace = kube_namespace
    # The service's own identity may create TokenReviews and nothing else (system:auth-delegator).
    reviewer_token = control_plane.issue_token(namespace, "config-service")
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{namespace}-config-service-auth-delegator"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:auth-delegator",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "config-service", "namespace": namespace}],
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(binding))
    operator_user = f"system:serviceaccount:{namespace}:operator"
    fleet = service_fleet(
        1,
        local_aws=local_aws,
        auth="serviceaccount",
        env={
            "CONFIG_SERVICE_TOKENREVIEW_AUDIENCE": AUDIENCE,
            "CONFIG_SERVICE_TOKENREVIEW_ALLOWED_USERS": operator_user,
            "CONFIG_SERVICE_KUBECONFIG": str(control_plane.kubeconfig_for_token(reviewer_token)),
        },
    )
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
