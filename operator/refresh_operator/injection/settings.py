"""Settings of the injection webhook, from the environment (``CONFIG_REFRESH_INJECTION_*``).

Kept beside the webhook (not in the operator's settings.py) so injection stays one package; the operator
chart sets them when ``injection.enabled``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

PREFIX = "CONFIG_REFRESH_INJECTION_"


class InjectionSettingsError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


@dataclasses.dataclass(frozen=True)
class InjectionSettings:
    enabled: bool = False
    address: str = "0.0.0.0"
    """Where the webhook server listens (HTTPS)."""
    port: int = 9443
    cert_file: Path | None = None
    """Serving certificate (PEM) the API server checks against the webhook configuration's caBundle;
    re-read when it changes (kopf's WebhookServer restarts its listener)."""
    key_file: Path | None = None
    template_file: Path | None = None
    """The sidecar template (JSON) the operator chart renders from the config-service chart's defaults."""


def _text(env: Mapping[str, str], key: str) -> str | None:
    value = env.get(PREFIX + key, "").strip()
    return value or None


def load_injection_settings(env: Mapping[str, str] | None = None) -> InjectionSettings:
    env = os.environ if env is None else env
    raw_enabled = (_text(env, "ENABLED") or "false").lower()
    if raw_enabled not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise InjectionSettingsError(f"{PREFIX}ENABLED must be true or false, got {raw_enabled!r}")
    enabled = raw_enabled in ("true", "1", "yes", "on")
    raw_port = _text(env, "PORT") or "9443"
    if not raw_port.isdigit() or not 1 <= int(raw_port) <= 65535:
        raise InjectionSettingsError(f"{PREFIX}PORT must be a port number, got {raw_port!r}")
    files: dict[str, Path | None] = {}
    for key in ("CERT_FILE", "KEY_FILE", "TEMPLATE_FILE"):
        raw = _text(env, key)
        files[key] = Path(raw) if raw else None
        if enabled and raw is None:
            raise InjectionSettingsError(f"{PREFIX}{key} is required when {PREFIX}ENABLED is true")
        if raw is not None and enabled and not Path(raw).is_file():
            raise InjectionSettingsError(f"{PREFIX}{key} points at {raw!r}, which is not a readable file")
    return InjectionSettings(
        enabled=enabled,
        address=_text(env, "ADDRESS") or "0.0.0.0",
        port=int(raw_port),
        cert_file=files["CERT_FILE"],
        key_file=files["KEY_FILE"],
        template_file=files["TEMPLATE_FILE"],
    )
