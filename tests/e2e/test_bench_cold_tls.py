"""The whole local stack secured as the charts deploy it, and the cold-path row measured on it.

`Stack.start()` is secured by default (security="tls-token"), and that is what every whole-stack row of
bench/ runs: every instance serves its refresh port with TLS and accepts only the fleet's bearer token,
and the operator reaches them through a route with the fleet's CA and its token file. Checked as a user
would: a change is applied on every instance, and the instances refuse what the operator must not be
able to do instead (a plaintext connection, a call without the token). Then the cold row at a tiny size:
the cold changes found no connection to an instance open and the warm ones found every one. Timings are
printed by the harness, never asserted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from devstack.controlplane.plane import ControlPlane
from devstack.stack import kube
from devstack.stack.builder import Stack, StackError

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import cold  # noqa: E402


@pytest.fixture
def secured_stack(control_plane: ControlPlane) -> Iterator[Stack]:
    # control_plane: the binaries exist; the stack runs its own apiserver, as make bench does.
    stack = Stack.start(instances=3, namespace="bench-tls")  # no security named: the default
    try:
        yield stack
    finally:
        stack.stop()


def probe(stack: Stack) -> pb.RefreshRequest:
    return pb.RefreshRequest(
        refresh_id="probe",
        parameter_name=f"{stack.local_aws.prefix}bench/tls/probe",
        version=1,
        operation=pb.OPERATION_UPSERT,
        payload_mode=pb.PAYLOAD_MODE_INVALIDATE,
    )


@pytest.mark.timeout(300)
def test_a_stack_started_without_naming_security_rolls_out_through_tls_and_the_token_only(
    secured_stack: Stack,
) -> None:
    stack = secured_stack
    assert stack.security_name() == "TLS + bearer token"  # what the benchmark rows print beside a figure
    route = kube.get_json(stack.control_plane, "configroute", stack.route, "-n", stack.namespace)
    refresh = route["spec"]["refresh"]
    assert refresh["tls"]["enabled"] is True
    assert refresh["auth"] == {"type": "bearerToken"}

    name = f"{stack.local_aws.prefix}bench/tls/flag"
    version = stack.put(name, "on")
    done = stack.wait_phase(name, version, {"Succeeded", "Failed", "PartiallyFailed"})
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["refreshed"] == 3
    assert stack.values(name) == [("on", version)] * 3

    instance = stack.fleet[0]
    # no TLS: the handshake fails, no call reaches the instance
    with (
        grpc.insecure_channel(instance.refresh_address) as channel,
        pytest.raises(grpc.RpcError) as plaintext,
    ):
        pb_grpc.RefreshServiceStub(channel).Refresh(probe(stack), timeout=5)
    assert plaintext.value.code() is grpc.StatusCode.UNAVAILABLE
    credentials = stack.fleet.refresh_credentials()
    assert credentials is not None
    # TLS, but no token
    with (
        grpc.secure_channel(instance.refresh_address, credentials) as channel,
        pytest.raises(grpc.RpcError) as tokenless,
    ):
        pb_grpc.RefreshServiceStub(channel).Refresh(probe(stack), timeout=5)
    assert tokenless.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_an_unknown_security_is_refused_before_anything_starts() -> None:
    with pytest.raises(StackError, match="security must be one of plaintext, tls-token"):
        Stack.start(instances=1, security="mtls")  # type: ignore[arg-type]


@pytest.mark.timeout(400)
def test_the_cold_row_reconnects_over_tls_after_the_channels_idle_closed(control_plane: ControlPlane) -> None:
    result = cold.run(instances=3, cold=1, warm=2, idle_seconds=1.0)
    (header, rows), *_ = result.tables
    by_kind = {row[0]: row for row in rows}
    assert set(by_kind) == {cold.WARM, cold.COLD, cold.COLD_API}
    connections = header.index("operator's open connections just before (min-max)")
    samples = header.index("samples")
    # every cold change came after the idle close had dropped all three instances' connections ...
    assert "instances 0-0" in by_kind[cold.COLD][connections]
    assert "instances 0-0" in by_kind[cold.COLD_API][connections]
    # ... and every warm change found all three open again
    assert "instances 3-3" in by_kind[cold.WARM][connections]
    assert (by_kind[cold.WARM][samples], by_kind[cold.COLD][samples]) == ("4", "1")
    assert "TLS and a bearer token on every instance" in result.notes[-1]
