"""config-service's settings rules that span fields: what a deployment must pair, and what a secure one
needs (authentication on every network-facing port, no bearer token in clear). Each failure names the key
at fault by its environment variable, and the flag that opts out where there is one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from config_service.loopback import is_loopback_address
from config_service.settings_local import check_local_delivery

if TYPE_CHECKING:
    from config_service.settings import Settings

ENV_PREFIX = "CONFIG_SERVICE_"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the key."""


def env_name(name: str) -> str:
    """The environment variable of a setting, e.g. CONFIG_SERVICE_REFRESH_PORT."""
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    """The command-line flag of a setting, e.g. --refresh-port."""
    return "--" + name.replace("_", "-")


is_loopback_host = is_loopback_address
"""Whether binding to a host keeps a port on this host (see `is_loopback_address`)."""


PORTS: tuple[Literal["refresh", "config"], ...] = ("refresh", "config")


def _mutual_tls(
    fail: Callable[[str, str], None],
    settings: Settings,
    port: Literal["refresh", "config"],
    identities: Sequence[str],
) -> None:
    """A port with a client CA (`<port>_client_ca_file`) needs a certificate and allowed identities."""
    cert, _, client_ca = settings.tls_files(port)
    if client_ca is not None:
        if cert is None:
            fail(f"{port}_tls_cert_file", f"mutual TLS ({port}_client_ca_file) needs a server certificate")
        if not identities:
            fail(f"{port}_allowed_identities", "mutual TLS needs at least one allowed client identity")


def check(settings: Settings) -> None:
    """Cross-field rules; each message names the key at fault."""

    def fail(field_name: str, message: str) -> None:
        raise SettingsError(f"{env_name(field_name)}: {message}")

    if settings.refresh_port and settings.refresh_port == settings.config_port:
        fail(
            "config_port", "must differ from the refresh port (RefreshService and ConfigService are separate)"
        )
    if not settings.prefixes:
        fail("prefixes", "at least one prefix is required")
    for prefix in settings.prefixes:
        if not prefix.startswith("/") or prefix == "/":
            fail("prefixes", f"each prefix must start with '/' and not be just '/', got {prefix!r}")
    for port in PORTS:
        cert, key, _ = settings.tls_files(port)
        if (cert is None) != (key is None):
            fail(f"{port}_tls_key_file", f"{port}_tls_cert_file and {port}_tls_key_file go together")
    _mutual_tls(fail, settings, "refresh", settings.refresh_allowed_identities)
    if settings.tokenreview_audience is not None and not (
        settings.tokenreview_allowed_users
        or settings.config_tokenreview_allowed_users
        or settings.config_tokenreview_allowed_groups
    ):
        fail("tokenreview_allowed_users", "ServiceAccount authentication needs at least one allowed username")
    _mutual_tls(fail, settings, "config", settings.config_allowed_identities)
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
    check_local_delivery(settings, fail)
