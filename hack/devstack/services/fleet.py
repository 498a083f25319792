"""A fleet of real `config-service` processes for tests, demos and benchmarks.

Why real processes: the operator talks to instances over the network, and what must be proven (health
during bootstrap, SIGTERM with calls in flight, authentication at the TLS layer, one Parameter Store read
per change) only exists in a real process. Instance i listens on its own loopback address 127.0.0.(10+i)
with free ports, so a test can tell instances apart by address as Cloud Map would. Every process runs
`python -m config_service` with `CONFIG_SERVICE_*` variables pointing at the local AWS stack, logs to its
own file, and is stopped (SIGTERM, then SIGKILL) when the fleet is closed.

Auth modes: "insecure" (default; `--insecure-refresh`), "token" (bearer token file in the fleet's
directory, `rotate_token()` rewrites it), "mtls" (a trustme CA signs the instances' serving certificates
and a client certificate for the identity `CLIENT_IDENTITY`), "serviceaccount" (Kubernetes TokenReview:
the caller passes the CONFIG_SERVICE_TOKENREVIEW_* and CONFIG_SERVICE_KUBECONFIG variables in `env` and
its own tokens per call). `refresh_credentials()` and
`call_metadata()` give a client what it needs to call RefreshService in the fleet's mode. ConfigService
listens on the instance's loopback address, which is loopback mode (no credential needed), unless the
fleet asks for `config_tls` (the serving certificate of the refresh port, from the fleet's CA) and
`config_token` (a bearer token file for ConfigService); `get_config` and `list_config` then use them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from configrefresh.v1 import (
    config_service_pb2,
    config_service_pb2_grpc,
    refresh_service_pb2,
    refresh_service_pb2_grpc,
)
from devstack.controlplane.procs import free_ports

AuthMode = Literal["insecure", "token", "mtls", "serviceaccount"]
CLIENT_IDENTITY = "config-refresh-operator"
SERVER_NAME = "config-service.local"
"""The name every instance's serving certificate carries besides its address: what a TLS route checks."""
FIRST_HOST_OCTET = 10


class ServiceError(RuntimeError):
    """An instance did not start, did not become SERVING, or did not stop; the message has its log tail."""


class AwsEndpoint(Protocol):
    """What the fleet needs from devstack.aws.local_aws.LocalAws."""

    endpoint_url: str
    region: str
    prefix: str


def host_for(index: int) -> str:
    """The loopback address of instance `index`: 127.0.0.10, 127.0.0.11, ... (carrying into the 3rd octet)."""
    number = FIRST_HOST_OCTET + index
    return f"127.0.{number // 256}.{number % 256}"


def service_command() -> list[str]:
    """How to start one instance: the venv's interpreter running the package."""
    return [sys.executable, "-m", "config_service"]


@dataclass(frozen=True)
class Credentials:
    """Files and secrets of the fleet's auth mode (None where the mode has none)."""

    mode: AuthMode
    token_file: Path | None = None
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    client_identity: str | None = None
    config_tls: bool = False
    config_token_file: Path | None = None


class Instance:
    """One `config-service` process with fixed host and ports (kept across restarts)."""

    def __init__(
        self,
        *,
        index: int,
        instance_id: str,
        env: Mapping[str, str],
        log_path: Path,
        credentials: Credentials,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.index = index
        self.instance_id = instance_id
        self.host = host_for(index)
        # probed together so the three are distinct (one at a time can hand out a port twice)
        self.refresh_port, self.config_port, self.metrics_port = free_ports(3, self.host)
        self.log_path = log_path
        self.credentials = credentials
        self._extra_args = list(extra_args)
        self._env = {
            **env,
            "CONFIG_SERVICE_INSTANCE_ID": instance_id,
            "CONFIG_SERVICE_HOST": self.host,
            "CONFIG_SERVICE_REFRESH_PORT": str(self.refresh_port),
            "CONFIG_SERVICE_CONFIG_PORT": str(self.config_port),
            "CONFIG_SERVICE_METRICS_PORT": str(self.metrics_port),
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._channels: dict[str, grpc.Channel] = {}

    # ----- addresses ----------------------------------------------------------------------------------

    @property
    def refresh_address(self) -> str:
        """host:port of RefreshService (what Cloud Map would hold)."""
        return f"{self.host}:{self.refresh_port}"

    @property
    def config_address(self) -> str:
        """host:port of ConfigService."""
        return f"{self.host}:{self.config_port}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus endpoint."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    # ----- process ------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The running process id, if started."""
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process ended, else None."""
        return self._process.poll() if self._process is not None else None

    def is_running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, extra_args: Sequence[str] = ()) -> None:
        """Start (or restart) the process on the same host and ports; does not wait for SERVING."""
        if self.is_running():
            raise ServiceError(f"{self.instance_id} is already running")
        self._close_channels()
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                [*service_command(), *self._extra_args, *extra_args],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code (SIGKILL after `timeout`)."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL and wait; returns the exit code."""
        return self._signal(signal.SIGKILL, 30.0)

    def terminate(self) -> None:
        """Send SIGTERM without waiting (for tests that watch the shutdown)."""
        if self.is_running():
            assert self._process is not None
            self._process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the process to exit; returns its exit code."""
        if self._process is None:
            raise ServiceError(f"{self.instance_id} was never started")
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ServiceError(f"{self.instance_id} did not exit in {timeout} s\n{self.log_tail()}") from None

    def _signal(self, signum: int, timeout: float) -> int:
        self._close_channels()
        process = self._process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        return int(process.returncode)

    # ----- health -------------------------------------------------------------------------------------

    def health(self, *, timeout: float = 2.0) -> str:
        """The grpc.health.v1 status on the config port ("SERVING", "NOT_SERVING", or "UNREACHABLE")."""
        try:
            stub = health_pb2_grpc.HealthStub(self._channel("config"))
            answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Block until the health service says SERVING; raises ServiceError with the log tail if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise ServiceError(
                    f"{self.instance_id} exited with {self.returncode} before SERVING\n{self.log_tail()}"
                )
            if self.health(timeout=1.0) == "SERVING":
                return
            time.sleep(0.05)
        raise ServiceError(f"{self.instance_id} not SERVING after {timeout} s\n{self.log_tail()}")

    # ----- clients ------------------------------------------------------------------------------------

    def get_config(self, name: str, *, timeout: float = 5.0) -> config_service_pb2.ConfigEntry:
        """GetConfig; raises grpc.RpcError (e.g. NOT_FOUND) as a client would see it."""
        stub = config_service_pb2_grpc.ConfigServiceStub(self._channel("config"))
        answer = stub.GetConfig(
            config_service_pb2.GetConfigRequest(name=name),
            timeout=timeout,
            metadata=config_metadata(self.credentials),
        )
        return cast(config_service_pb2.ConfigEntry, answer.entry)

    def list_config(
        self, prefix: str = "", *, page_size: int = 0, page_token: str = "", timeout: float = 5.0
    ) -> config_service_pb2.ListConfigResponse:
        """One ListConfig page."""
        stub = config_service_pb2_grpc.ConfigServiceStub(self._channel("config"))
        request = config_service_pb2.ListConfigRequest(
            prefix=prefix, page_size=page_size, page_token=page_token
        )
        answer = stub.ListConfig(request, timeout=timeout, metadata=config_metadata(self.credentials))
        return cast(config_service_pb2.ListConfigResponse, answer)

    def get_state(
        self, name_prefix: str = "", *, timeout: float = 5.0
    ) -> refresh_service_pb2.GetStateResponse:
        """GetState with the fleet's credentials."""
        stub = refresh_service_pb2_grpc.RefreshServiceStub(self._channel("refresh"))
        answer = stub.GetState(
            refresh_service_pb2.GetStateRequest(name_prefix=name_prefix),
            timeout=timeout,
            metadata=call_metadata(self.credentials),
        )
        return cast(refresh_service_pb2.GetStateResponse, answer)

    def refresh(
        self, request: refresh_service_pb2.RefreshRequest, *, timeout: float = 10.0
    ) -> refresh_service_pb2.RefreshResponse:
        """Refresh with the fleet's credentials."""
        stub = refresh_service_pb2_grpc.RefreshServiceStub(self._channel("refresh"))
        answer = stub.Refresh(request, timeout=timeout, metadata=call_metadata(self.credentials))
        return cast(refresh_service_pb2.RefreshResponse, answer)

    def refresh_channel(self) -> grpc.Channel:
        """A sync channel to RefreshService with the fleet's transport credentials (owned by the instance)."""
        return self._channel("refresh")

    def _channel(self, which: Literal["refresh", "config"]) -> grpc.Channel:
        channel = self._channels.get(which)
        if channel is None:
            if which == "config":
                channel = (
                    grpc.secure_channel(
                        self.config_address,
                        grpc.ssl_channel_credentials(self.credentials.ca_file.read_bytes()),
                    )
                    if self.credentials.config_tls and self.credentials.ca_file is not None
                    else grpc.insecure_channel(self.config_address)
                )
            else:
                transport = refresh_transport_credentials(self.credentials)
                channel = (
                    grpc.secure_channel(self.refresh_address, transport)
                    if transport is not None
                    else grpc.insecure_channel(self.refresh_address)
                )
            self._channels[which] = channel
        return channel

    def _close_channels(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    # ----- logs and metrics ---------------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the process wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log, headed with the instance id."""
        tail = self.log_text().splitlines()[-lines:]
        return f"--- {self.instance_id} ({self.log_path}) ---\n" + "\n".join(tail)

    def metrics_text(self, timeout: float = 5.0) -> str:
        """One scrape of /metrics."""
        import urllib.request

        with urllib.request.urlopen(self.metrics_url, timeout=timeout) as answer:  # noqa: S310 - loopback
            return str(answer.read().decode())


def refresh_transport_credentials(credentials: Credentials) -> grpc.ChannelCredentials | None:
    """TLS (and client certificate) credentials for RefreshService, or None for plaintext."""
    if credentials.ca_file is None:
        return None
    key = credentials.client_key_file.read_bytes() if credentials.client_key_file else None
    chain = credentials.client_cert_file.read_bytes() if credentials.client_cert_file else None
    return grpc.ssl_channel_credentials(
        root_certificates=credentials.ca_file.read_bytes(), private_key=key, certificate_chain=chain
    )


def call_metadata(credentials: Credentials) -> tuple[tuple[str, str], ...]:
    """Per-call metadata: the bearer token in token mode."""
    if credentials.token_file is None:
        return ()
    token = credentials.token_file.read_text().strip().splitlines()[0]
    return (("authorization", f"Bearer {token}"),)


def config_metadata(credentials: Credentials) -> tuple[tuple[str, str], ...]:
    """Per-call metadata for ConfigService: its bearer token when the fleet has one."""
    if credentials.config_token_file is None:
        return ()
    token = credentials.config_token_file.read_text().strip().splitlines()[0]
    return (("authorization", f"Bearer {token}"),)


class ServiceFleet:
    """`count` instances sharing one local AWS stack, prefix and auth mode."""

    def __init__(
        self,
        count: int,
        *,
        local_aws: AwsEndpoint,
        workdir: Path,
        prefix: str | None = None,
        auth: AuthMode = "insecure",
        tls: bool = False,
        config_tls: bool = False,
        config_token: bool = False,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        first_index: int = 0,
        id_prefix: str = "svc",
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.local_aws = local_aws
        self.prefix = prefix or local_aws.prefix
        self.auth = auth
        self._extra_args = list(extra_args)
        self._id_prefix = id_prefix
        self._next_index = first_index
        self._ca: Any = None
        credentials = self._make_credentials(auth, tls or config_tls)
        config_token_file = None
        if config_token:
            config_token_file = self.workdir / "config-token"
            config_token_file.write_text(secrets.token_urlsafe(32) + "\n")
        self.credentials = dataclasses.replace(
            credentials, config_tls=config_tls, config_token_file=config_token_file
        )
        self._base_env = self._environment(env or {})
        self.instances: list[Instance] = []
        self.add(count, start=False)

    # ----- building -----------------------------------------------------------------------------------

    def _environment(self, overrides: Mapping[str, str]) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("CONFIG_SERVICE_")}
        env.update(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": self.local_aws.region,
                "AWS_DEFAULT_REGION": self.local_aws.region,
                "PYTHONUNBUFFERED": "1",
                "CONFIG_SERVICE_AWS_ENDPOINT_URL": self.local_aws.endpoint_url,
                "CONFIG_SERVICE_AWS_REGION": self.local_aws.region,
                "CONFIG_SERVICE_PREFIXES": self.prefix,
                "CONFIG_SERVICE_GRACE_SECONDS": "20",
            }
        )
        credentials = self.credentials
        if credentials.mode == "insecure":
            env["CONFIG_SERVICE_INSECURE_REFRESH"] = "true"
        if credentials.token_file is not None:
            env["CONFIG_SERVICE_REFRESH_TOKEN_FILE"] = str(credentials.token_file)
        if credentials.ca_file is not None:
            env["CONFIG_SERVICE_REFRESH_TLS_CERT_FILE"] = str(self.workdir / "server-{index}.pem")
            env["CONFIG_SERVICE_REFRESH_TLS_KEY_FILE"] = str(self.workdir / "server-{index}.key")
        if credentials.config_tls:
            env["CONFIG_SERVICE_CONFIG_TLS_CERT_FILE"] = str(self.workdir / "server-{index}.pem")
            env["CONFIG_SERVICE_CONFIG_TLS_KEY_FILE"] = str(self.workdir / "server-{index}.key")
        if credentials.config_token_file is not None:
            env["CONFIG_SERVICE_CONFIG_TOKEN_FILE"] = str(credentials.config_token_file)
        if credentials.mode == "mtls":
            assert credentials.client_identity is not None
            env["CONFIG_SERVICE_REFRESH_CLIENT_CA_FILE"] = str(self.workdir / "client-ca.pem")
            env["CONFIG_SERVICE_REFRESH_ALLOWED_IDENTITIES"] = credentials.client_identity
        env.update(overrides)
        return env

    def _make_credentials(self, auth: AuthMode, tls: bool) -> Credentials:
        if auth == "insecure" and not tls:
            return Credentials(mode="insecure")
        token_file = None
        if auth == "token":
            token_file = self.workdir / "refresh-token"
            token_file.write_text(secrets.token_urlsafe(32) + "\n")
        if auth in ("token", "serviceaccount") and not tls:
            return Credentials(mode=auth, token_file=token_file)
        import trustme

        self._ca = trustme.CA()
        ca_file = self.workdir / "server-ca.pem"
        self._ca.cert_pem.write_to_path(str(ca_file))
        if auth != "mtls":
            return Credentials(mode=auth, token_file=token_file, ca_file=ca_file)
        client_ca = trustme.CA()
        client_ca.cert_pem.write_to_path(str(self.workdir / "client-ca.pem"))
        client = client_ca.issue_cert(CLIENT_IDENTITY)
        client.cert_chain_pems[0].write_to_path(str(self.workdir / "client.pem"))
        client.private_key_pem.write_to_path(str(self.workdir / "client.key"))
        self._client_ca = client_ca
        return Credentials(
            mode="mtls",
            ca_file=ca_file,
            client_cert_file=self.workdir / "client.pem",
            client_key_file=self.workdir / "client.key",
            client_identity=CLIENT_IDENTITY,
        )

    def issue_client_cert(self, identity: str) -> tuple[Path, Path]:
        """A client certificate (pem, key) from the fleet's client CA for another identity (mtls only)."""
        client_ca = getattr(self, "_client_ca", None)
        if client_ca is None:
            raise ServiceError("issue_client_cert needs auth='mtls'")
        leaf = client_ca.issue_cert(identity)
        cert = self.workdir / f"client-{identity}.pem"
        key = self.workdir / f"client-{identity}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        return cert, key

    def add(self, count: int, *, start: bool = True) -> list[Instance]:
        """Add `count` instances (started if `start`, without waiting)."""
        added = []
        for _ in range(count):
            index = self._next_index
            self._next_index += 1
            env = {key: value.replace("{index}", str(index)) for key, value in self._base_env.items()}
            if self._ca is not None:
                leaf = self._ca.issue_cert(host_for(index), "localhost", SERVER_NAME)
                chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
                (self.workdir / f"server-{index}.pem").write_bytes(chain)
                leaf.private_key_pem.write_to_path(str(self.workdir / f"server-{index}.key"))
            instance = Instance(
                index=index,
                instance_id=f"{self._id_prefix}-{index}",
                env=env,
                log_path=self.workdir / f"{self._id_prefix}-{index}.log",
                credentials=self.credentials,
                extra_args=self._extra_args,
            )
            self.instances.append(instance)
            added.append(instance)
            if start:
                instance.start()
        return added

    # ----- the whole fleet ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Instance]:
        return iter(self.instances)

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> Instance:
        return self.instances[index]

    def start(self) -> None:
        """Start every instance that is not running (no wait)."""
        for instance in self.instances:
            if not instance.is_running():
                instance.start()

    def wait_serving(self, timeout: float = 120.0) -> None:
        """Wait until every instance is SERVING."""
        deadline = time.monotonic() + timeout
        for instance in self.instances:
            instance.wait_serving(max(1.0, deadline - time.monotonic()))

    def stop(self) -> dict[str, int]:
        """SIGTERM all (in parallel) and wait; returns exit codes by instance id."""
        for instance in self.instances:
            instance.terminate()
        return {instance.instance_id: instance.stop() for instance in self.instances}

    def kill(self) -> None:
        """SIGKILL all."""
        for instance in self.instances:
            instance.kill()

    def rotate_token(self, token: str | None = None) -> str:
        """Replace the token file atomically (token mode); returns the new token."""
        if self.credentials.token_file is None:
            raise ServiceError("rotate_token needs auth='token'")
        token = token or secrets.token_urlsafe(32)
        staging = self.credentials.token_file.with_suffix(".new")
        staging.write_text(token + "\n")
        staging.replace(self.credentials.token_file)
        return token

    def refresh_credentials(self) -> grpc.ChannelCredentials | None:
        """Transport credentials a RefreshService client needs (None: plaintext)."""
        return refresh_transport_credentials(self.credentials)

    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        """Per-call metadata a RefreshService client needs (the bearer token in token mode)."""
        return call_metadata(self.credentials)

    def log_tails(self, lines: int = 40) -> str:
        """The log tails of every instance."""
        return "\n".join(instance.log_tail(lines) for instance in self.instances)

    def close(self) -> None:
        """Stop everything; never raises."""
        for instance in self.instances:
            with contextlib.suppress(Exception):
                instance.terminate()
        for instance in self.instances:
            with contextlib.suppress(Exception):
                instance.stop(timeout=30)
