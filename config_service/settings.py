"""One typed, frozen settings object, built once at start from flags and `CONFIG_SERVICE_*` variables.

Why one table: every setting is declared once in `FIELDS` (name, type, default, help). The command line
(`config-service --help`), the environment variable names and the validation all come from that table, so
the help text cannot drift from what the service reads. A malformed or missing value fails at start with a
message that names the key (`CONFIG_SERVICE_REFRESH_PORT` or `--refresh-port`), never deep inside a
request. The object is passed explicitly to whatever needs it; nothing reads the environment later.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import signal
import socket
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from config_service.files import is_memory_backed

ENV_PREFIX = "CONFIG_SERVICE_"

Kind = Literal["str", "int", "float", "bool", "list", "map", "path"]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the key."""


@dataclass(frozen=True)
class Field:
    """One setting: its attribute name, type, default and help text."""

    name: str
    kind: Kind
    default: Any
    help: str
    group: str


FIELDS: tuple[Field, ...] = (
    # Identity and addresses.
    Field(
        "instance_id",
        "str",
        None,
        "Identity of this instance in acknowledgments and logs (default: hostname).",
        "instance",
    ),
    Field("host", "str", "127.0.0.1", "Address the gRPC and metrics servers bind to.", "instance"),
    Field(
        "refresh_port",
        "int",
        50051,
        "Port of RefreshService (the port registered in Cloud Map); 0 picks one.",
        "instance",
    ),
    Field(
        "config_port",
        "int",
        50052,
        "Port of ConfigService, the read API for applications; 0 picks one.",
        "instance",
    ),
    Field("metrics_port", "int", 9102, "Port of the Prometheus /metrics endpoint; 0 picks one.", "instance"),
    Field("metrics_enabled", "bool", True, "Serve Prometheus metrics.", "instance"),
    Field(
        "health_port",
        "int",
        None,
        "Also serve grpc.health.v1 alone, in plaintext, on this port (for kubelet gRPC probes, which cannot "
        "speak TLS); unset: off.",
        "instance",
    ),
    Field(
        "prefixes",
        "list",
        ("/config-service/",),
        "Comma-separated Parameter Store path prefixes this instance loads and accepts refreshes for.",
        "cache",
    ),
    # Parameter Store.
    Field(
        "aws_region",
        "str",
        None,
        "AWS region (default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1).",
        "aws",
    ),
    Field("aws_endpoint_url", "str", None, "Parameter Store endpoint override (local stacks only).", "aws"),
    Field("aws_retry_mode", "str", "standard", "botocore retry mode: standard or adaptive.", "aws"),
    Field(
        "aws_max_attempts",
        "int",
        5,
        "botocore attempts per Parameter Store call, throttling included.",
        "aws",
    ),
    Field(
        "aws_read_timeout_seconds",
        "float",
        10.0,
        "How long one AWS request (Parameter Store, Cloud Map) waits for an answer before it is retried.",
        "aws",
    ),
    Field(
        "bootstrap_backoff_seconds",
        "float",
        0.5,
        "First delay between bootstrap attempts; doubles up to bootstrap_backoff_max_seconds.",
        "aws",
    ),
    Field("bootstrap_backoff_max_seconds", "float", 30.0, "Longest delay between bootstrap attempts.", "aws"),
    Field(
        "ttl_seconds",
        "float",
        600.0,
        "Re-read an entry from Parameter Store in the background once it is this old; 0 disables.",
        "cache",
    ),
    Field(
        "ttl_jitter",
        "float",
        0.1,
        "Fraction of ttl_seconds by which each entry's re-read is made earlier.",
        "cache",
    ),
    # RefreshService authentication.
    Field(
        "insecure_refresh",
        "bool",
        False,
        "Accept RefreshService calls without any authentication (logged as a warning).",
        "auth",
    ),
    Field(
        "refresh_accept_values",
        "bool",
        True,
        "Accept PAYLOAD_MODE_VALUE refreshes; off, only invalidations (the instance re-reads from Parameter "
        "Store), for a refresh channel that is neither authenticated nor encrypted.",
        "auth",
    ),
    Field(
        "refresh_tls_cert_file",
        "path",
        None,
        "PEM certificate chain served on the refresh port (TLS).",
        "auth",
    ),
    Field("refresh_tls_key_file", "path", None, "PEM private key for refresh_tls_cert_file.", "auth"),
    Field(
        "refresh_client_ca_file",
        "path",
        None,
        "PEM CA that signs operator client certificates; enables mutual TLS (needs the TLS cert and key).",
        "auth",
    ),
    Field(
        "refresh_allowed_identities",
        "list",
        (),
        "Client certificate identities (DNS/URI SAN or CN) allowed to call RefreshService.",
        "auth",
    ),
    Field(
        "refresh_token_file",
        "path",
        None,
        "File of accepted bearer tokens, one per line; re-read when it changes (rotation without restart).",
        "auth",
    ),
    Field(
        "tokenreview_audience",
        "str",
        None,
        "Enables Kubernetes ServiceAccount tokens: the audience they must carry (checked with TokenReview).",
        "auth",
    ),
    Field(
        "tokenreview_allowed_users",
        "list",
        (),
        "ServiceAccount usernames allowed, e.g. system:serviceaccount:config-refresh:operator.",
        "auth",
    ),
    Field(
        "tokenreview_cache_seconds",
        "float",
        60.0,
        "How long a TokenReview answer (negative ones included) is reused.",
        "auth",
    ),
    Field(
        "tokenreview_cache_size",
        "int",
        10000,
        "Most TokenReview answers kept (least recently used go first).",
        "auth",
    ),
    Field(
        "tokenreview_rate",
        "float",
        10.0,
        "TokenReview calls per second at most (beyond the burst), so unknown tokens cannot flood the API "
        "server; over it a call is answered UNAVAILABLE.",
        "auth",
    ),
    Field(
        "tokenreview_burst", "int", 20, "TokenReview calls allowed at once before the rate applies.", "auth"
    ),
    Field(
        "insecure_plaintext_tokens",
        "bool",
        False,
        "Accept bearer tokens that arrive without TLS from another host (by default refused: a token sent "
        "in clear must be considered read on the way).",
        "auth",
    ),
    Field(
        "kubeconfig", "path", None, "Kubeconfig for TokenReview calls (default: in-cluster config).", "auth"
    ),
    # ConfigService transport and authentication.
    Field(
        "config_host",
        "str",
        None,
        "Address ConfigService binds to (default: host). A loopback address (anything in 127.0.0.0/8, ::1, "
        "localhost) is loopback mode, for sidecars: callers on the same host need no credential.",
        "config",
    ),
    Field(
        "config_tls_cert_file",
        "path",
        None,
        "PEM certificate chain served on the config port; re-read when it changes.",
        "config",
    ),
    Field("config_tls_key_file", "path", None, "PEM private key for config_tls_cert_file.", "config"),
    Field(
        "config_client_ca_file",
        "path",
        None,
        "PEM CA that signs application client certificates; enables mutual TLS on the config port.",
        "config",
    ),
    Field(
        "config_allowed_identities",
        "list",
        (),
        "Client certificate identities (DNS/URI SAN or CN) allowed to call ConfigService.",
        "config",
    ),
    Field(
        "config_token_file",
        "path",
        None,
        "File of bearer tokens accepted by ConfigService, one per line; re-read when it changes.",
        "config",
    ),
    Field(
        "config_tokenreview_allowed_users",
        "list",
        (),
        "ServiceAccount usernames allowed to call ConfigService (tokens for tokenreview_audience), e.g. "
        "system:serviceaccount:apps:orders.",
        "config",
    ),
    Field(
        "config_tokenreview_allowed_groups",
        "list",
        (),
        "Groups allowed to call ConfigService, e.g. system:serviceaccounts:apps (every ServiceAccount of "
        "the namespace apps).",
        "config",
    ),
    Field(
        "insecure_config_api",
        "bool",
        False,
        "Serve ConfigService without authentication on a non-loopback address: any caller that reaches "
        "the port reads every String value (SecureStrings are withheld). Never in production.",
        "config",
    ),
    # Operations.
    Field("grace_seconds", "float", 20.0, "On SIGTERM, how long in-flight calls get to finish.", "ops"),
    Field(
        "drain_seconds",
        "float",
        0.0,
        "On SIGTERM, how long to keep answering reads while health says NOT_SERVING, before refusing calls.",
        "ops",
    ),
    Field("log_level", "str", "INFO", "Log level (DEBUG, INFO, WARNING, ERROR).", "ops"),
    # Cloud Map self-registration.
    Field(
        "cloudmap_service_id",
        "str",
        None,
        "Register this instance in this Cloud Map service at start and deregister at shutdown.",
        "cloudmap",
    ),
    Field("cloudmap_advertise_ip", "str", None, "AWS_INSTANCE_IPV4 to register (default: host).", "cloudmap"),
    Field(
        "cloudmap_attributes",
        "map",
        {},
        "Extra Cloud Map attributes, comma-separated key=value pairs.",
        "cloudmap",
    ),
    # issue 21: local delivery (the sidecar side: localhost HTTP, files, reload hook). Kept in one block so it
    # ports to the new settings model as a unit.
    Field(
        "local_http_port",
        "int",
        None,
        "Serve the local HTTP read API (GET /v1/config/{name}, /v1/config?prefix=, long poll) on this port; "
        "0 picks one; unset: off.",
        "local",
    ),
    Field(
        "local_http_host",
        "str",
        "127.0.0.1",
        "Address of the local HTTP API: a loopback address only (127.0.0.0/8, ::1, localhost); anything "
        "else is refused, the HTTP API never leaves the pod.",
        "local",
    ),
    Field(
        "local_http_secure_strings",
        "bool",
        False,
        "Serve SecureString values on the local HTTP API (default: withheld, 403 for one, left out of "
        "listings): any process in the pod's network namespace can call it.",
        "local",
    ),
    Field(
        "local_http_max_wait_seconds",
        "float",
        300.0,
        "Longest long poll a caller may ask for with ?wait= (longer asks are cut to this).",
        "local",
    ),
    Field(
        "local_http_default_wait_seconds",
        "float",
        30.0,
        "How long a request with If-None-Match and no ?wait= waits for a newer version before 304.",
        "local",
    ),
    Field(
        "local_files_dir",
        "path",
        None,
        "Write one file per String/StringList parameter under this directory, swapped atomically through a "
        "..data symlink as the kubelet does for ConfigMaps; unset: off.",
        "local",
    ),
    Field(
        "local_files_secure_dir",
        "path",
        None,
        "Write SecureString parameters (mode 0400) under this directory, which must be memory-backed "
        "(tmpfs); unset: SecureStrings are not written to files.",
        "local",
    ),
    Field(
        "insecure_local_files_secure_on_disk",
        "bool",
        False,
        "Allow local_files_secure_dir on a filesystem that is not memory-backed: secrets then reach a disk.",
        "local",
    ),
    Field(
        "local_reload_url",
        "str",
        None,
        "After a change is applied (and the files swapped), POST the changed names to this loopback URL "
        "of the app, e.g. http://127.0.0.1:8080/-/reload.",
        "local",
    ),
    Field(
        "local_reload_signal",
        "str",
        None,
        "After a change is applied, send this signal (e.g. SIGHUP) to the app's process, found by "
        "local_reload_pid_file or local_reload_process_name (needs shareProcessNamespace in a pod).",
        "local",
    ),
    Field(
        "local_reload_pid_file",
        "path",
        None,
        "File holding the pid that local_reload_signal goes to (read at each reload).",
        "local",
    ),
    Field(
        "local_reload_process_name",
        "str",
        None,
        "Name (/proc/PID/comm, or the base name of argv[0]) of the processes local_reload_signal goes to.",
        "local",
    ),
    Field(
        "local_reload_timeout_seconds",
        "float",
        5.0,
        "How long the reload POST may take before it counts as failed.",
        "local",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Everything the service reads, typed; build it with `Settings.from_sources` or directly in tests."""

    instance_id: str = dataclasses.field(default_factory=socket.gethostname)
    host: str = "127.0.0.1"
    refresh_port: int = 50051
    config_port: int = 50052
    metrics_port: int = 9102
    metrics_enabled: bool = True
    health_port: int | None = None
    prefixes: tuple[str, ...] = ("/config-service/",)
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    aws_retry_mode: str = "standard"
    aws_max_attempts: int = 5
    aws_read_timeout_seconds: float = 10.0
    bootstrap_backoff_seconds: float = 0.5
    bootstrap_backoff_max_seconds: float = 30.0
    ttl_seconds: float = 600.0
    ttl_jitter: float = 0.1
    insecure_refresh: bool = False
    refresh_accept_values: bool = True
    refresh_tls_cert_file: Path | None = None
    refresh_tls_key_file: Path | None = None
    refresh_client_ca_file: Path | None = None
    refresh_allowed_identities: tuple[str, ...] = ()
    refresh_token_file: Path | None = None
    tokenreview_audience: str | None = None
    tokenreview_allowed_users: tuple[str, ...] = ()
    tokenreview_cache_seconds: float = 60.0
    tokenreview_cache_size: int = 10000
    tokenreview_rate: float = 10.0
    tokenreview_burst: int = 20
    insecure_plaintext_tokens: bool = False
    kubeconfig: Path | None = None
    config_host: str | None = None
    config_tls_cert_file: Path | None = None
    config_tls_key_file: Path | None = None
    config_client_ca_file: Path | None = None
    config_allowed_identities: tuple[str, ...] = ()
    config_token_file: Path | None = None
    config_tokenreview_allowed_users: tuple[str, ...] = ()
    config_tokenreview_allowed_groups: tuple[str, ...] = ()
    insecure_config_api: bool = False
    grace_seconds: float = 20.0
    drain_seconds: float = 0.0
    log_level: str = "INFO"
    cloudmap_service_id: str | None = None
    cloudmap_advertise_ip: str | None = None
    cloudmap_attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # issue 21: local delivery
    local_http_port: int | None = None
    local_http_host: str = "127.0.0.1"
    local_http_secure_strings: bool = False
    local_http_max_wait_seconds: float = 300.0
    local_http_default_wait_seconds: float = 30.0
    local_files_dir: Path | None = None
    local_files_secure_dir: Path | None = None
    insecure_local_files_secure_on_disk: bool = False
    local_reload_url: str | None = None
    local_reload_signal: str | None = None
    local_reload_pid_file: Path | None = None
    local_reload_process_name: str | None = None
    local_reload_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        _check(self)

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
        """Flags win over `CONFIG_SERVICE_*` variables, which win over defaults."""
        parser = build_parser()
        namespace = parser.parse_args(list(argv) if argv is not None else None)
        environ = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in FIELDS:
            flag_value = getattr(namespace, field.name)
            if flag_value is not None:
                converted = _convert(field, flag_value, key=flag_name(field))
            elif env_name(field) in environ:
                converted = _convert(field, environ[env_name(field)], key=env_name(field))
            else:
                continue
            if converted is not None:  # an empty value means "the default"
                values[field.name] = converted
        try:
            return cls(**values)
        except SettingsError:
            raise
        except (TypeError, ValueError) as error:  # pragma: no cover - defensive
            raise SettingsError(str(error)) from error


def is_loopback_host(host: str) -> bool:
    """Whether binding to `host` keeps a port on this host: any address in 127.0.0.0/8 (the whole block
    is loopback for the operating system, not just 127.0.0.1), ::1, or the name localhost."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def env_name(field: Field) -> str:
    """The environment variable of a setting, e.g. CONFIG_SERVICE_REFRESH_PORT."""
    return ENV_PREFIX + field.name.upper()


def flag_name(field: Field) -> str:
    """The command-line flag of a setting, e.g. --refresh-port."""
    return "--" + field.name.replace("_", "-")


_GROUP_TITLES = {
    "instance": "instance and ports",
    "cache": "cache",
    "aws": "Parameter Store",
    "auth": "RefreshService authentication",
    "config": "ConfigService transport and authentication",
    "ops": "operations",
    "cloudmap": "Cloud Map self-registration (off unless cloudmap_service_id is set)",
    "local": "local delivery to the app in the pod: HTTP on loopback, files, reload hook",  # issue 21
}


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per setting, each naming its environment variable and default."""
    parser = argparse.ArgumentParser(
        prog="config-service",
        description=(
            "Serves AWS Parameter Store values from memory (ConfigService) and applies pushed changes "
            "without a restart (RefreshService). Every flag can also be set with the environment variable "
            "shown; flags win."
        ),
    )
    groups = {key: parser.add_argument_group(title) for key, title in _GROUP_TITLES.items()}
    for field in FIELDS:
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(default) or "none"
        elif isinstance(default, dict):
            default = ",".join(f"{k}={v}" for k, v in default.items()) or "none"
        help_text = f"{field.help} [env {env_name(field)}; default {default}]"
        group = groups[field.group]
        if field.kind == "bool":
            group.add_argument(
                flag_name(field),
                dest=field.name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=help_text,
            )
        else:
            group.add_argument(
                flag_name(field), dest=field.name, default=None, metavar=field.kind.upper(), help=help_text
            )
    return parser


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(field: Field, raw: Any, *, key: str) -> Any:
    if field.kind == "bool":
        if isinstance(raw, bool):
            return raw
        lowered = str(raw).strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(f"{key}: expected true or false, got {raw!r}")
    text = str(raw).strip()
    if field.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise SettingsError(f"{key}: expected an integer, got {raw!r}") from None
    if field.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise SettingsError(f"{key}: expected a number, got {raw!r}") from None
    if field.kind == "list":
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if field.kind == "map":
        pairs: dict[str, str] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise SettingsError(f"{key}: expected key=value pairs, got {item!r}")
            pairs[name.strip()] = value.strip()
        return pairs
    if field.kind == "path":
        return Path(text) if text else None
    return text or None


def _check(settings: Settings) -> None:
    """Cross-field rules; each message names the key at fault."""

    def fail(field_name: str, message: str) -> None:
        raise SettingsError(f"{ENV_PREFIX}{field_name.upper()}: {message}")

    for name in ("refresh_port", "config_port", "metrics_port", "health_port"):
        port = getattr(settings, name)
        if port is not None and not 0 <= port <= 65535:
            fail(name, f"expected a port number 0..65535, got {port}")
    if settings.refresh_port and settings.refresh_port == settings.config_port:
        fail(
            "config_port", "must differ from the refresh port (RefreshService and ConfigService are separate)"
        )
    if not settings.prefixes:
        fail("prefixes", "at least one prefix is required")
    for prefix in settings.prefixes:
        if not prefix.startswith("/") or prefix == "/":
            fail("prefixes", f"each prefix must start with '/' and not be just '/', got {prefix!r}")
    if settings.aws_retry_mode not in ("standard", "adaptive", "legacy"):
        fail("aws_retry_mode", f"expected standard or adaptive, got {settings.aws_retry_mode!r}")
    if settings.aws_max_attempts < 1:
        fail("aws_max_attempts", "must be at least 1")
    if settings.aws_read_timeout_seconds <= 0:
        fail("aws_read_timeout_seconds", "must be positive")
    if settings.ttl_seconds < 0:
        fail("ttl_seconds", "must be 0 (disabled) or positive")
    if not 0 <= settings.ttl_jitter < 1:
        fail("ttl_jitter", "must be in [0, 1)")
    if settings.bootstrap_backoff_seconds <= 0:
        fail("bootstrap_backoff_seconds", "must be positive")
    if settings.grace_seconds < 0:
        fail("grace_seconds", "must not be negative")
    if settings.drain_seconds < 0:
        fail("drain_seconds", "must not be negative")
    if (settings.refresh_tls_cert_file is None) != (settings.refresh_tls_key_file is None):
        fail("refresh_tls_key_file", "refresh_tls_cert_file and refresh_tls_key_file go together")
    if (settings.config_tls_cert_file is None) != (settings.config_tls_key_file is None):
        fail("config_tls_key_file", "config_tls_cert_file and config_tls_key_file go together")
    if settings.refresh_client_ca_file is not None:
        if settings.refresh_tls_cert_file is None:
            fail("refresh_tls_cert_file", "mutual TLS (refresh_client_ca_file) needs a server certificate")
        if not settings.refresh_allowed_identities:
            fail("refresh_allowed_identities", "mutual TLS needs at least one allowed client identity")
    if settings.tokenreview_audience is not None and not (
        settings.tokenreview_allowed_users
        or settings.config_tokenreview_allowed_users
        or settings.config_tokenreview_allowed_groups
    ):
        fail("tokenreview_allowed_users", "ServiceAccount authentication needs at least one allowed username")
    if settings.tokenreview_cache_size < 0:
        fail("tokenreview_cache_size", "must not be negative")
    if settings.tokenreview_rate <= 0:
        fail("tokenreview_rate", "must be positive")
    if settings.tokenreview_burst < 1:
        fail("tokenreview_burst", "must be at least 1")
    if settings.config_client_ca_file is not None:
        if settings.config_tls_cert_file is None:
            fail("config_tls_cert_file", "mutual TLS (config_client_ca_file) needs a server certificate")
        if not settings.config_allowed_identities:
            fail("config_allowed_identities", "mutual TLS needs at least one allowed client identity")
    if (
        settings.config_tokenreview_allowed_users or settings.config_tokenreview_allowed_groups
    ) and settings.tokenreview_audience is None:
        fail(
            "tokenreview_audience",
            "config_tokenreview_allowed_users/_groups need the audience ServiceAccount tokens must carry",
        )
    if not settings.config_auth_modes and not settings.config_loopback and not settings.insecure_config_api:
        fail(
            "insecure_config_api",
            f"ConfigService would serve every value, SecureStrings included, without authentication on "
            f"{settings.config_bind_host!r}, which is not a loopback address: set config_client_ca_file, "
            "config_token_file or config_tokenreview_allowed_users/_groups, bind it to 127.0.0.1 with "
            "config_host (sidecar use), or pass --insecure-config-api",
        )
    bearer_modes = {"token", "serviceaccount"}
    if not settings.insecure_plaintext_tokens:
        if bearer_modes & set(settings.auth_modes) and not (
            settings.refresh_tls or is_loopback_host(settings.host)
        ):
            fail(
                "refresh_tls_cert_file",
                "RefreshService takes bearer tokens but serves no TLS on a non-loopback address, so "
                "tokens would cross the network in clear: set refresh_tls_cert_file and "
                "refresh_tls_key_file, or pass --insecure-plaintext-tokens",
            )
        if bearer_modes & set(settings.config_auth_modes) and not (
            settings.config_tls or settings.config_loopback
        ):
            fail(
                "config_tls_cert_file",
                "ConfigService takes bearer tokens but serves no TLS on a non-loopback address, so "
                "tokens would cross the network in clear: set config_tls_cert_file and "
                "config_tls_key_file, or pass --insecure-plaintext-tokens",
            )
    if not settings.auth_modes and not settings.insecure_refresh:
        fail(
            "insecure_refresh",
            "no RefreshService authentication configured: set refresh_client_ca_file, refresh_token_file or "
            "tokenreview_audience, or pass --insecure-refresh to accept unauthenticated refreshes",
        )
    for path_name in (
        "refresh_tls_cert_file",
        "refresh_tls_key_file",
        "refresh_client_ca_file",
        "refresh_token_file",
        "config_tls_cert_file",
        "config_tls_key_file",
        "config_client_ca_file",
        "config_token_file",
        "kubeconfig",
    ):
        path = getattr(settings, path_name)
        if path is not None and not Path(path).is_file():
            fail(path_name, f"file not found: {path}")
    if settings.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        fail("log_level", f"expected DEBUG, INFO, WARNING or ERROR, got {settings.log_level!r}")
    _check_local_delivery(settings, fail)


def _check_local_delivery(settings: Settings, fail: Callable[[str, str], None]) -> None:
    """issue 21: local delivery: loopback only, a memory-backed directory for secrets, a valid hook."""
    if settings.local_http_port is not None and not 0 <= settings.local_http_port <= 65535:
        fail("local_http_port", f"expected a port number 0..65535, got {settings.local_http_port}")
    if not is_loopback_host(settings.local_http_host):
        fail(
            "local_http_host",
            f"{settings.local_http_host!r} is not a loopback address: the local HTTP API serves values "
            "without authentication and must never leave the pod; use 127.0.0.1 or ::1 (for a network "
            "read API use ConfigService over gRPC with authentication)",
        )
    if settings.local_http_max_wait_seconds <= 0:
        fail("local_http_max_wait_seconds", "must be positive")
    if not 0 <= settings.local_http_default_wait_seconds <= settings.local_http_max_wait_seconds:
        fail("local_http_default_wait_seconds", "must be in [0, local_http_max_wait_seconds]")
    files, secure = settings.local_files_dir, settings.local_files_secure_dir
    if files is not None and secure is not None:
        a, b = Path(files).resolve(), Path(secure).resolve()
        if a == b or a in b.parents or b in a.parents:
            fail("local_files_secure_dir", "must not be local_files_dir, inside it, or around it")
    if secure is not None and not settings.insecure_local_files_secure_on_disk:
        memory, fstype = is_memory_backed(Path(secure))
        if not memory:
            fail(
                "local_files_secure_dir",
                f"{secure} is on a {fstype} filesystem, not a memory-backed one (tmpfs): SecureStrings "
                "would reach a disk. Mount an emptyDir with medium: Memory there, or pass "
                "--insecure-local-files-secure-on-disk",
            )
    if settings.local_reload_url is not None:
        url = urllib.parse.urlsplit(settings.local_reload_url)
        if url.scheme != "http" or not url.hostname or not is_loopback_host(url.hostname):
            fail(
                "local_reload_url",
                f"expected an http:// URL on a loopback address (the app in the same pod), got "
                f"{settings.local_reload_url!r}",
            )
    if settings.local_reload_signal is not None:
        if reload_signal(settings.local_reload_signal) is None:
            fail("local_reload_signal", f"unknown signal {settings.local_reload_signal!r}, e.g. SIGHUP")
        if (settings.local_reload_pid_file is None) == (settings.local_reload_process_name is None):
            fail(
                "local_reload_signal",
                "needs exactly one of local_reload_pid_file and local_reload_process_name",
            )
    elif settings.local_reload_pid_file is not None or settings.local_reload_process_name is not None:
        fail("local_reload_signal", "local_reload_pid_file/_process_name need local_reload_signal")
    if settings.local_reload_timeout_seconds <= 0:
        fail("local_reload_timeout_seconds", "must be positive")


def reload_signal(name: str) -> signal.Signals | None:
    """The signal named `name` (SIGHUP, HUP or a number), or None."""
    text = name.strip().upper()
    if text.isdigit():
        try:
            return signal.Signals(int(text))
        except ValueError:
            return None
    if not text.startswith("SIG"):
        text = "SIG" + text
    return getattr(signal.Signals, text, None)
