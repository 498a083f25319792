"""An application's read as the charts admit it: GetConfig over TLS with a ServiceAccount token.

The charts serve config-service's config API over TLS (the release's CA, the route's server name) and
authenticate callers with ServiceAccount tokens for the service's audience. The node cluster and the
image tests read what each pod serves this way, as an application in the cluster would.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

import grpc

from configrefresh.v1 import config_service_pb2, config_service_pb2_grpc


def release_ca(objects: Iterable[Mapping[str, Any]]) -> bytes:
    """The CA certificate (PEM) of the release's TLS Secret: the first Secret object with a `ca.crt`."""
    for obj in objects:
        if obj.get("kind", "Secret") == "Secret" and "ca.crt" in (obj.get("data") or {}):
            return base64.b64decode(obj["data"]["ca.crt"])
    raise LookupError("no Secret with a ca.crt among the release's objects")


def read_over_tls(
    address: str, name: str, *, ca_pem: bytes, server_name: str, token: str, timeout: float = 10.0
) -> tuple[str, int]:
    """(value, version) that the config API at `address` serves for `name`, read over TLS (trusting
    `ca_pem`, checking `server_name`) with `token` as the bearer; raises grpc.RpcError as a client sees it."""
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    with grpc.secure_channel(
        address, credentials, options=(("grpc.ssl_target_name_override", server_name),)
    ) as channel:
        entry = (
            config_service_pb2_grpc.ConfigServiceStub(channel)
            .GetConfig(
                config_service_pb2.GetConfigRequest(name=name),
                timeout=timeout,
                metadata=(("authorization", f"Bearer {token}"),),
            )
            .entry
        )
    return entry.value, int(entry.version)
