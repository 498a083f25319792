"""config-service's one typed, frozen settings object: a pydantic-settings model built once at start.

Every setting is declared once, as a field of `Settings` (name, type, default, bounds, help, flag group). The
environment variable (`CONFIG_SERVICE_<FIELD>`), the command-line flag (`--<field-with-dashes>`, generated
from the fields by `build_parser`) and the validation all come from that declaration, so `config-service
--help` cannot drift from what the service reads. Flags win over variables, which win over defaults; an
empty value means the default. A malformed or missing value fails at start with a message that names the
key (`CONFIG_SERVICE_REFRESH_PORT`, or `--refresh-port` when it came from the flag), never deep inside a
request. The object is passed explicitly to whatever needs it; nothing reads the environment later.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from config_service.envsource import EnvSettings, environment, first_problem
from config_service.settings_local import reload_signal
from config_service.settings_rules import (
    ENV_PREFIX,
    SettingsError,
    check,
    env_name,
    flag_name,
    is_loopback_host,
)

__all__ = [
    "ENV_PREFIX",
    "Settings",
    "SettingsError",
    "build_parser",
    "env_name",
    "flag_name",
    "is_loopback_host",
    "reload_signal",
]


Port = Annotated[int, Field(ge=0, le=65535)]
Names = Annotated[tuple[str, ...], NoDecode]
"""Comma-separated in a variable or flag."""


_FLAGS: ContextVar[frozenset[str]] = ContextVar("config_service_flags", default=frozenset())
"""While `from_sources` builds the object: the settings given as flags (their errors name the flag)."""


class Settings(EnvSettings):
    """Everything the service reads, typed; build it with `Settings.from_sources`, or directly in tests.

    Each field's docstring is its `--help` text; a field that opens a group of flags is a key of `GROUPS`.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_by_name=True,
    )

    instance_id: str = Field(default_factory=socket.gethostname)
    """Identity of this instance in acknowledgments and logs (default: hostname)."""
    host: str = "127.0.0.1"
    """Address the gRPC and metrics servers bind to."""
    refresh_port: Port = 50051
    """Port of RefreshService (the port registered in Cloud Map); 0 picks one."""
    config_port: Port = 50052
    """Port of ConfigService, the read API for applications; 0 picks one."""
    metrics_port: Port = 9102
    """Port of the Prometheus /metrics endpoint; 0 picks one."""
    metrics_enabled: bool = True
    """Serve Prometheus metrics."""
    health_port: Port | None = None
    """Also serve grpc.health.v1 alone, in plaintext, on this port (for kubelet gRPC probes, which cannot
    speak TLS); unset: off."""
    prefixes: Names = ("/config-service/",)
    """Comma-separated Parameter Store path prefixes this instance loads and accepts refreshes for."""
    ttl_seconds: float = Field(600.0, ge=0)
    """Re-read an entry from Parameter Store in the background once it is this old; 0 disables."""
    ttl_jitter: float = Field(0.1, ge=0, lt=1)
    """Fraction of ttl_seconds by which each entry's re-read is made earlier."""
    aws_region: str = Field(
        "us-east-1",
        validation_alias=AliasChoices(f"{ENV_PREFIX}AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    """AWS region (default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1)."""
    aws_endpoint_url: str | None = None
    """Parameter Store endpoint override (local stacks only)."""
    aws_retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    """botocore retry mode: standard or adaptive."""
    aws_max_attempts: int = Field(5, ge=1)
    """botocore attempts per Parameter Store call, the first included (1: no retry), throttling included."""
    aws_read_timeout_seconds: float = Field(10.0, gt=0)
    """How long one AWS request (Parameter Store, Cloud Map) waits for an answer before it is retried."""
    bootstrap_backoff_seconds: float = Field(0.5, gt=0)
    """First delay between bootstrap attempts; doubles up to bootstrap_backoff_max_seconds."""
    bootstrap_backoff_max_seconds: float = 30.0
    """Longest delay between bootstrap attempts."""
    insecure_refresh: bool = False
    """Accept RefreshService calls without any authentication (logged as a warning)."""
    refresh_accept_values: bool = True
    """Accept PAYLOAD_MODE_VALUE refreshes; off, only invalidations (the instance re-reads from Parameter
    Store), for a refresh channel that is neither authenticated nor encrypted."""
    refresh_tls_cert_file: Path | None = None
    """PEM certificate chain served on the refresh port (TLS)."""
    refresh_tls_key_file: Path | None = None
    """PEM private key for refresh_tls_cert_file."""
    refresh_client_ca_file: Path | None = None
    """PEM CA that signs operator client certificates; enables mutual TLS (needs the TLS cert and key)."""
    refresh_allowed_identities: Names = ()
    """Client certificate identities (DNS/URI SAN or CN) allowed to call RefreshService."""
    refresh_token_file: Path | None = None
    """File of accepted bearer tokens, one per line; re-read when it changes (rotation without restart)."""
    tokenreview_audience: str | None = None
    """Enables Kubernetes ServiceAccount tokens: the audience they must carry (checked with TokenReview)."""
    tokenreview_allowed_users: Names = ()
    """ServiceAccount usernames allowed, e.g. system:serviceaccount:config-refresh:operator."""
    tokenreview_cache_seconds: float = 60.0
    """How long a TokenReview answer (negative ones included) is reused."""
    tokenreview_cache_size: int = Field(10000, ge=0)
    """Most TokenReview answers kept (least recently used go first)."""
    tokenreview_rate: float = Field(10.0, gt=0)
    """TokenReview calls per second at most (beyond the burst), so unknown tokens cannot flood the API
    server; over it a call is answered UNAVAILABLE."""
    tokenreview_burst: int = Field(20, ge=1)
    """TokenReview calls allowed at once before the rate applies."""
    insecure_plaintext_tokens: bool = False
    """Accept bearer tokens that arrive without TLS from another host (by default refused: a token sent in
    clear must be considered read on the way)."""
    kubeconfig: Path | None = None
    """Kubeconfig for TokenReview calls (default: in-cluster config)."""
    config_host: str | None = None
    """Address ConfigService binds to (default: host). A loopback address (anything in 127.0.0.0/8, ::1,
    localhost) is loopback mode, for sidecars: callers on the same host need no credential."""
    config_tls_cert_file: Path | None = None
    """PEM certificate chain served on the config port; re-read when it changes."""
    config_tls_key_file: Path | None = None
    """PEM private key for config_tls_cert_file."""
    config_client_ca_file: Path | None = None
    """PEM CA that signs application client certificates; enables mutual TLS on the config port."""
    config_allowed_identities: Names = ()
    """Client certificate identities (DNS/URI SAN or CN) allowed to call ConfigService."""
    config_token_file: Path | None = None
    """File of bearer tokens accepted by ConfigService, one per line; re-read when it changes."""
    config_tokenreview_allowed_users: Names = ()
    """ServiceAccount usernames allowed to call ConfigService (tokens for tokenreview_audience), e.g.
    system:serviceaccount:apps:orders."""
    config_tokenreview_allowed_groups: Names = ()
    """Groups allowed to call ConfigService, e.g. system:serviceaccounts:apps (every ServiceAccount of the
    namespace apps)."""
    insecure_config_api: bool = False
    """Serve ConfigService without authentication on a non-loopback address: any caller that reaches the
    port reads every String value (SecureStrings are withheld). Never in production."""
    grace_seconds: float = Field(20.0, ge=0)
    """On SIGTERM, how long in-flight calls get to finish."""
    drain_seconds: float = Field(0.0, ge=0)
    """On SIGTERM, how long to keep answering reads while health says NOT_SERVING, before refusing calls."""
    log_level: str = "INFO"
    """Log level (DEBUG, INFO, WARNING, ERROR)."""
    cloudmap_service_id: str | None = None
    """Register this instance in this Cloud Map service at start and deregister at shutdown."""
    cloudmap_advertise_ip: str | None = None
    """AWS_INSTANCE_IPV4 to register (default: host)."""
    cloudmap_attributes: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    """Extra Cloud Map attributes, comma-separated key=value pairs."""
    pod_namespace: str | None = Field(
        None, validation_alias=AliasChoices(f"{ENV_PREFIX}POD_NAMESPACE", "POD_NAMESPACE")
    )
    """Kubernetes namespace of this pod, registered as the k8s-namespace attribute (default: POD_NAMESPACE,
    which the chart sets from the downward API)."""
    local_http_port: Port | None = None
    """Serve the local HTTP read API (GET /v1/config/{name}, /v1/config?prefix=, long poll) on this port; 0
    picks one; unset: off."""
    local_http_host: str = "127.0.0.1"
    """Address of the local HTTP API: a loopback address only (127.0.0.0/8, ::1, localhost); anything else
    is refused, the HTTP API never leaves the pod."""
    local_http_secure_strings: bool = False
    """Serve SecureString values on the local HTTP API (default: withheld, 403 for one, left out of
    listings): any process in the pod's network namespace can call it."""
    local_http_max_wait_seconds: float = Field(300.0, gt=0)
    """Longest long poll a caller may ask for with ?wait= (longer asks are cut to this)."""
    local_http_default_wait_seconds: float = Field(30.0, ge=0)
    """How long a request with If-None-Match and no ?wait= waits for a newer version before 304."""
    local_files_dir: Path | None = None
    """Write one file per String/StringList parameter under this directory, swapped atomically through a
    ..data symlink as the kubelet does for ConfigMaps; unset: off."""
    local_files_secure_dir: Path | None = None
    """Write SecureString parameters (mode 0400) under this directory, which must be memory-backed (tmpfs);
    unset: SecureStrings are not written to files."""
    insecure_local_files_secure_on_disk: bool = False
    """Allow local_files_secure_dir on a filesystem that is not memory-backed: secrets then reach a disk."""
    local_reload_url: str | None = None
    """After a change is applied (and the files swapped), POST the changed names to this loopback URL of
    the app, e.g. http://127.0.0.1:8080/-/reload."""
    local_reload_signal: str | None = None
    """After a change is applied, send this signal (e.g. SIGHUP) to the app's process, found by
    local_reload_pid_file or local_reload_process_name (needs shareProcessNamespace in a pod)."""
    local_reload_pid_file: Path | None = None
    """File holding the pid that local_reload_signal goes to (read at each reload)."""
    local_reload_process_name: str | None = None
    """Name (/proc/PID/comm, or the base name of argv[0]) of the processes local_reload_signal goes to."""
    local_reload_timeout_seconds: float = Field(5.0, gt=0)
    """How long the reload POST may take before it counts as failed."""

    def __init__(self, **values: Any) -> None:
        """Direct construction (tests, embedders): keywords over `CONFIG_SERVICE_*` variables."""
        flags = _FLAGS.get()
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise SettingsError(
                first_problem(error, lambda name: flag_name(name) if name in flags else env_name(name))
            ) from None

    @field_validator(
        "prefixes",
        "refresh_allowed_identities",
        "tokenreview_allowed_users",
        "config_allowed_identities",
        "config_tokenreview_allowed_users",
        "config_tokenreview_allowed_groups",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("cloudmap_attributes", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, sep, text = item.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"expected key=value pairs, got {item!r}")
            pairs[name.strip()] = text.strip()
        return pairs

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Settings:
        check(self)
        return self

    def tls_files(self, port: Literal["refresh", "config"]) -> tuple[Path | None, Path | None, Path | None]:
        """(certificate, key, client CA) of the refresh or the config port."""
        if port == "refresh":
            return self.refresh_tls_cert_file, self.refresh_tls_key_file, self.refresh_client_ca_file
        return self.config_tls_cert_file, self.config_tls_key_file, self.config_client_ca_file

    @property
    def refresh_tls(self) -> bool:
        """Whether the refresh port serves TLS."""
        return self.refresh_tls_cert_file is not None

    @property
    def mtls(self) -> bool:
        """Whether RefreshService callers must present a client certificate."""
        return self.refresh_client_ca_file is not None

    @property
    def auth_modes(self) -> tuple[str, ...]:
        """The configured ways a RefreshService caller can authenticate."""
        modes = []
        if self.mtls:
            modes.append("mtls")
        if self.refresh_token_file is not None:
            modes.append("token")
        if self.tokenreview_audience is not None and self.tokenreview_allowed_users:
            modes.append("serviceaccount")
        return tuple(modes)

    @property
    def config_bind_host(self) -> str:
        """The address ConfigService binds to."""
        return self.config_host or self.host

    @property
    def config_loopback(self) -> bool:
        """Whether ConfigService listens on this host only (sidecar mode)."""
        return is_loopback_host(self.config_bind_host)

    @property
    def config_tls(self) -> bool:
        """Whether the config port serves TLS."""
        return self.config_tls_cert_file is not None

    @property
    def config_auth_modes(self) -> tuple[str, ...]:
        """The configured ways a ConfigService caller can authenticate."""
        modes = []
        if self.config_client_ca_file is not None:
            modes.append("mtls")
        if self.config_token_file is not None:
            modes.append("token")
        if self.config_tokenreview_allowed_users or self.config_tokenreview_allowed_groups:
            modes.append("serviceaccount")
        return tuple(modes)

    @classmethod
    def from_sources(
        cls, argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Flags (`argv`, default sys.argv) win over `CONFIG_SERVICE_*` variables (`env`, default the
        process environment), which win over defaults."""
        namespace = vars(build_parser().parse_args(list(argv) if argv is not None else None))
        flags = {name: value for name, value in namespace.items() if value is not None and value != ""}
        token = _FLAGS.set(frozenset(flags))
        try:
            with environment(env):
                return cls(**flags)
        finally:
            _FLAGS.reset(token)


GROUPS = {
    "instance_id": "instance and ports",
    "prefixes": "cache",
    "aws_region": "Parameter Store",
    "insecure_refresh": "RefreshService authentication",
    "config_host": "ConfigService transport and authentication",
    "grace_seconds": "operations",
    "cloudmap_service_id": "Cloud Map self-registration (off unless cloudmap_service_id is set)",
    "local_http_port": "local delivery to the app in the pod: HTTP on loopback, files, reload hook",
}
"""The `--help` sections, each named by the field that opens it (fields keep their declaration order)."""


def build_parser() -> argparse.ArgumentParser:
    """The command line, generated from the fields: one flag per setting, naming its variable and default."""
    parser = argparse.ArgumentParser(
        prog="config-service",
        description=(
            "Serves AWS Parameter Store values from memory (ConfigService) and applies pushed changes "
            "without a restart (RefreshService). Every flag can also be set with the environment variable "
            "shown; flags win."
        ),
    )
    group = parser.add_argument_group()
    for name, field in Settings.model_fields.items():
        if name in GROUPS:
            group = parser.add_argument_group(GROUPS[name])
        default: Any = (
            "hostname"
            if field.default_factory is socket.gethostname
            else field.get_default(call_default_factory=True)
        )
        if isinstance(default, dict):
            default = ",".join(f"{key}={value}" for key, value in default.items())
        elif isinstance(default, tuple):
            default = ",".join(default)
        shown = "none" if default is None or default == "" else default
        help_text = f"{' '.join(str(field.description).split())} [env {env_name(name)}; default {shown}]"
        kind = (
            {"action": argparse.BooleanOptionalAction}
            if field.annotation is bool
            else {"metavar": _metavar(field.annotation)}
        )
        group.add_argument(flag_name(name), dest=name, default=None, help=help_text, **kind)
    return parser


def _metavar(annotation: Any) -> str:
    text = str(annotation)
    for word, metavar in (
        ("dict", "MAP"),
        ("tuple", "LIST"),
        ("Path", "PATH"),
        ("int", "INT"),
        ("float", "FLOAT"),
    ):
        if word in text:
            return metavar
    return "STR"
