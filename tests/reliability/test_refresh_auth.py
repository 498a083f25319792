"""Security 10: nobody without the right credentials changes an instance's configuration.

Three real instances, one per authentication mode: a bearer token file, ServiceAccount tokens checked with
TokenReview against the real kube-apiserver, and mutual TLS with an allow-list of client identities.
Each refused caller sends a Refresh carrying a newer version (and GetState): no credentials →
UNAUTHENTICATED; a wrong, expired or revoked token → UNAUTHENTICATED; a client certificate from an
untrusted CA (or none) → the TLS handshake fails; a valid identity not on the allow-list →
PERMISSION_DENIED. Zero accepted: each instance still serves the version it loaded.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from configrefresh.v1 import refresh_service_pb2 as pb
from configrefresh.v1 import refresh_service_pb2_grpc as pb_grpc
from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.fixtures.services import FleetFactory
from devstack.services.fleet import CLIENT_IDENTITY, Instance
from tests.reliability.checks import instance_state

AUDIENCE = "config-service"


def _attempt(instance: Instance, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> list[Any]:
    """Codes of a GetState and of a Refresh pushing version 99 of the seeded parameter."""
    stub = pb_grpc.RefreshServiceStub(channel)
    name = "/config-service/auth/seeded"
    request = pb.RefreshRequest(
        parameter_name=name, version=99, operation=pb.OPERATION_UPSERT, value="intruder", refresh_id="x"
    )
    codes = []
    calls: list[Callable[[], object]] = [
        lambda: stub.GetState(pb.GetStateRequest(), timeout=10, metadata=metadata),
        lambda: stub.Refresh(request, timeout=10, metadata=metadata),
    ]
    for call in calls:
        try:
            call()
        except grpc.RpcError as error:
            codes.append(error.code())
        else:
            codes.append(grpc.StatusCode.OK)
    return codes


def _get_state_code(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    """GetState only: how the test checks that a legitimate caller does get in (it never refreshes)."""
    try:
        pb_grpc.RefreshServiceStub(channel).GetState(pb.GetStateRequest(), timeout=10, metadata=metadata)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def _bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token is not None else ()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def resigned(token: str, signing_key: Path, *, expired: bool) -> str:
    """The same ServiceAccount token re-signed by the cluster's own key, expired an hour ago if asked."""
    header, payload, _ = token.split(".")
    claims = json.loads(_unb64url(payload))
    if expired:
        now = int(time.time())
        claims.update({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})
    signing_input = f"{header}.{_b64url(json.dumps(claims).encode())}"
    key = serialization.load_pem_private_key(signing_key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def test_no_unauthenticated_or_unauthorised_refresh_is_ever_accepted(
    control_plane: ControlPlane,
    kube_namespace: str,
    local_aws: LocalAws,
    service_fleet: FleetFactory,
    tokenreview_fleet: FleetFactory,
) -> None:
    name = f"{local_aws.prefix}auth/seeded"
    local_aws.client("ssm").put_parameter(Name=name, Value="loaded", Type="String")
    token_fleet = service_fleet(1, local_aws=local_aws, auth="token")
    sa_fleet = tokenreview_fleet(1, audience=AUDIENCE)
    mtls_fleet = service_fleet(1, local_aws=local_aws, auth="mtls")
    instances = [token_fleet[0], sa_fleet[0], mtls_fleet[0]]
    assert [instance_state(i, name) for i in instances] == [("loaded", 1)] * 3

    refused: dict[str, list[Any]] = {}
    unauthenticated = [grpc.StatusCode.UNAUTHENTICATED] * 2
    denied = [grpc.StatusCode.PERMISSION_DENIED] * 2
    handshake_failed = [grpc.StatusCode.UNAVAILABLE] * 2

    # Bearer token file.
    target = token_fleet[0]
    with grpc.insecure_channel(target.refresh_address) as channel:
        refused["token: none"] = _attempt(target, channel, ())
        refused["token: wrong"] = _attempt(target, channel, _bearer("not-the-token"))
        good = token_fleet.call_metadata()
        refused["token: right one, mangled"] = _attempt(target, channel, _bearer(good[0][1][7:-2] + "xx"))
        assert _get_state_code(channel, good) is grpc.StatusCode.OK  # the right token does work

    # ServiceAccount tokens (TokenReview).
    target = sa_fleet[0]
    operator_token = control_plane.issue_token(kube_namespace, "operator", audiences=[AUDIENCE])
    revoked = control_plane.issue_token(kube_namespace, "revoked", audiences=[AUDIENCE])
    control_plane.kubectl("delete", "serviceaccount", "revoked", "-n", kube_namespace)
    with grpc.insecure_channel(target.refresh_address) as channel:
        refused["sa: none"] = _attempt(target, channel, ())
        refused["sa: not a token"] = _attempt(target, channel, _bearer("not-a-token"))
        refused["sa: expired"] = _attempt(
            target, channel, _bearer(resigned(operator_token, control_plane.pki.sa_private_key, expired=True))
        )
        # Control: the same re-signing without the expiry change is accepted, so only `exp` differs.
        control = resigned(operator_token, control_plane.pki.sa_private_key, expired=False)
        assert _get_state_code(channel, _bearer(control)) is grpc.StatusCode.OK
        refused["sa: revoked (ServiceAccount deleted)"] = _attempt(target, channel, _bearer(revoked))
        wrong_audience = control_plane.issue_token(kube_namespace, "operator", audiences=["other"])
        refused["sa: wrong audience"] = _attempt(target, channel, _bearer(wrong_audience))
        intruder = control_plane.issue_token(kube_namespace, "intruder", audiences=[AUDIENCE])
        refused["sa: valid identity, not allowed"] = _attempt(target, channel, _bearer(intruder))
        assert _get_state_code(channel, _bearer(operator_token)) is grpc.StatusCode.OK

    # Mutual TLS with an allow-list.
    target = mtls_fleet[0]
    credentials = mtls_fleet.credentials
    assert credentials.ca_file is not None
    server_ca = credentials.ca_file.read_bytes()
    rogue_ca = trustme.CA()
    rogue = rogue_ca.issue_cert(CLIENT_IDENTITY)  # the allowed name, from a CA the service does not trust
    untrusted = grpc.ssl_channel_credentials(
        server_ca, rogue.private_key_pem.bytes(), rogue.cert_chain_pems[0].bytes()
    )
    cert, key = mtls_fleet.issue_client_cert("someone-else")
    not_listed = grpc.ssl_channel_credentials(server_ca, key.read_bytes(), cert.read_bytes())
    for label, channel_credentials in (
        ("mtls: untrusted client CA", untrusted),
        ("mtls: no client certificate", grpc.ssl_channel_credentials(server_ca)),
        ("mtls: trusted CA, identity not allowed", not_listed),
    ):
        with grpc.secure_channel(target.refresh_address, channel_credentials) as channel:
            refused[label] = _attempt(target, channel, ())

    expected = {label: unauthenticated for label in refused if label.startswith(("token", "sa"))}
    expected["sa: valid identity, not allowed"] = denied
    expected["mtls: untrusted client CA"] = handshake_failed
    expected["mtls: no client certificate"] = handshake_failed
    expected["mtls: trusted CA, identity not allowed"] = denied
    assert refused == expected
    # Zero accepted: each instance still serves what it loaded, and none reports version 99.
    assert [instance_state(i, name) for i in instances] == [("loaded", 1)] * 3
    for instance in (token_fleet[0], mtls_fleet[0]):  # GetState with each fleet's own credentials
        versions = {p.name: p.version for p in instance.get_state(f"{local_aws.prefix}auth/").parameters}
        assert versions == {name: 1}, versions
    print(
        f"\nauth: {len(refused)} kinds of refused caller x (GetState, Refresh v99): "
        + "; ".join(f"{label} -> {codes[0].name}" for label, codes in refused.items())
        + "; accepted 0, every instance still at v1"
    )
