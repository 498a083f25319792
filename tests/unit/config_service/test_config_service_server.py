"""create_server wires both ports, health, metrics and TLS; the bootstrap flips health to SERVING."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from config_service.auth import (
    CONFIG_SERVICE_PREFIX,
    Authenticator,
    AuthInterceptor,
    CallCredentials,
    Decision,
    Verdict,
)
from config_service.cache import ConfigCache, Entry, ValueType
from config_service.config_servicer import ConfigServicer
from config_service.server import create_server
from config_service.settings import Settings
from config_service.tls import ReloadingCertificate
from configrefresh.v1 import config_service_pb2 as cpb
from configrefresh.v1 import config_service_pb2_grpc as cpb_grpc
from configrefresh.v1 import refresh_service_pb2 as rpb
from configrefresh.v1 import refresh_service_pb2_grpc as rpb_grpc

NAME = "/config-service/acme/flag"


class GatedStore:
    """Parameter Store as the bootstrap sees it, answering only once the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def get_parameters_by_path(self, prefix: str) -> list[Entry]:
        await self.gate.wait()
        now = datetime.now(UTC)
        return [Entry(NAME, "on", ValueType.STRING, 3, now, now)]

    async def get_parameter(self, name: str) -> Entry | None:
        return None

    async def get_parameters(self, names: Sequence[str]) -> tuple[list[Entry], list[str]]:
        return [], list(names)


def scrape_metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback
        return str(answer.read().decode())


async def test_create_server_serves_health_tls_reads_and_metrics(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    settings = Settings(
        instance_id="unit",
        refresh_port=0,
        config_port=0,
        metrics_port=0,
        insecure_refresh=True,
        config_tls_cert_file=cert,
        config_tls_key_file=key,
        ttl_seconds=0,
    )
    store = GatedStore()
    service = await create_server(settings, store=store)  # type: ignore[arg-type]
    await service.start()
    boot = asyncio.create_task(service.bootstrap())
    credentials = grpc.ssl_channel_credentials(ca.cert_pem.bytes())
    channel = grpc.aio.secure_channel(f"127.0.0.1:{service.config_port}", credentials)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        before = await health.Check(health_pb2.HealthCheckRequest(service="configrefresh.v1.ConfigService"))
        store.gate.set()
        await boot
        after = await health.Check(health_pb2.HealthCheckRequest(service="configrefresh.v1.ConfigService"))
        assert before.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert after.status == health_pb2.HealthCheckResponse.SERVING

        answer = await cpb_grpc.ConfigServiceStub(channel).GetConfig(cpb.GetConfigRequest(name=NAME))
        assert (answer.entry.value, answer.entry.version) == ("on", 3)

        assert service.metrics_port
        url = f"http://127.0.0.1:{service.metrics_port}/metrics"
        scrape = await asyncio.to_thread(scrape_metrics, url)
        assert 'config_service_cache_entries{state="live"} 1.0' in scrape
        assert "config_service_getconfig_latency_seconds_count 1.0" in scrape
        assert "config_service_cache_oldest_entry_age_seconds" in scrape
        assert 'config_service_build_info{python="' in scrape
    finally:
        await channel.close()
        await service.stop(grace=1)
    assert service.refresh_port != service.config_port


async def test_health_port_is_plaintext_health_only_and_invalidate_only_refuses_values(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    settings = Settings(
        instance_id="unit",
        refresh_port=0,
        config_port=0,
        metrics_enabled=False,
        health_port=0,
        insecure_refresh=True,
        refresh_accept_values=False,
        config_tls_cert_file=cert,
        config_tls_key_file=key,
        ttl_seconds=0,
    )
    store = GatedStore()
    store.gate.set()
    service = await create_server(settings, store=store)  # type: ignore[arg-type]
    await service.start()
    await service.bootstrap()
    assert service.health_port
    health_channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.health_port}")
    refresh_channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.refresh_port}")
    try:
        health = await health_pb2_grpc.HealthStub(health_channel).Check(
            health_pb2.HealthCheckRequest(service="configrefresh.v1.ConfigService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await cpb_grpc.ConfigServiceStub(health_channel).GetConfig(cpb.GetConfigRequest(name=NAME))
        assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED, "the health port serves health only"

        stub = rpb_grpc.RefreshServiceStub(refresh_channel)
        value = rpb.RefreshRequest(parameter_name=NAME, version=4, operation=rpb.OPERATION_UPSERT, value="x")
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.Refresh(value)
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
        invalidate = rpb.RefreshRequest(
            parameter_name=NAME,
            version=4,
            operation=rpb.OPERATION_UPSERT,
            payload_mode=rpb.PAYLOAD_MODE_INVALIDATE,
        )
        answer = await stub.Refresh(invalidate)
        assert answer.instance_id == "unit", "an invalidation is still accepted"
    finally:
        await health_channel.close()
        await refresh_channel.close()
        await service.stop(grace=1)


class Recorder:
    """An authentication method that allows everything and remembers what each call carried."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[CallCredentials] = []

    async def check(self, credentials: CallCredentials) -> Verdict:
        self.seen.append(credentials)
        return Verdict(Decision.ALLOW, principal="recorded")


async def test_the_interceptor_sees_tls_and_the_loopback_origin_of_each_call(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    recorder = Recorder()
    interceptor = AuthInterceptor(Authenticator([recorder]), service_prefix=CONFIG_SERVICE_PREFIX)
    server = grpc.aio.server(interceptors=[interceptor])
    now = datetime.now(UTC)
    cpb_grpc.add_ConfigServiceServicer_to_server(
        ConfigServicer(cache=ConfigCache([Entry(NAME, "on", ValueType.STRING, 1, now, now)])),
        server,
    )
    tls_port = server.add_secure_port(
        "127.0.0.1:0", ReloadingCertificate(cert_file=cert, key_file=key).credentials()
    )
    plain_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    metadata = (("authorization", "Bearer t0ken"),)
    try:
        secure = grpc.aio.secure_channel(
            f"127.0.0.1:{tls_port}", grpc.ssl_channel_credentials(ca.cert_pem.bytes())
        )
        plain = grpc.aio.insecure_channel(f"127.0.0.1:{plain_port}")
        for channel in (secure, plain):
            await cpb_grpc.ConfigServiceStub(channel).GetConfig(
                cpb.GetConfigRequest(name=NAME), metadata=metadata
            )
            await channel.close()
    finally:
        await server.stop(None)
    over_tls, over_plaintext = recorder.seen
    # Over TLS the origin decides nothing, so it is not worked out.
    assert (over_tls.tls, over_tls.loopback, over_tls.bearer) == (True, False, "t0ken")
    assert (over_plaintext.tls, over_plaintext.loopback, over_plaintext.bearer) == (False, True, "t0ken")


def test_a_rotation_caught_half_way_keeps_the_last_good_pair(tmp_path: Path) -> None:
    ca = trustme.CA()
    first, second = ca.issue_cert("a.example"), ca.issue_cert("b.example")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    first.cert_chain_pems[0].write_to_path(str(cert))
    first.private_key_pem.write_to_path(str(key))
    reloading = ReloadingCertificate(cert_file=cert, key_file=key)
    assert reloading.fetch() is None, "unchanged files: keep the current configuration"
    second.cert_chain_pems[0].write_to_path(str(cert))  # the new certificate, still the old key
    assert reloading.fetch() is None
    assert reloading.loads == 1
    key.write_text("-----BEGIN PRIVATE KEY-----\ntruncated")
    assert reloading.fetch() is None
    second.private_key_pem.write_to_path(str(key))
    assert reloading.fetch() is not None
    assert reloading.loads == 2
    assert reloading.fetch() is None
