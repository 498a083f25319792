"""podSync's settings, read once from the environment.

Kept apart from the operator core's settings on purpose: podSync must run (and be tested) on its own with
``kopf run -m refresh_operator.podsync.standalone``. ``PodSyncSettings.from_env`` reads the same AWS keys as
the core's settings, so every AWS client of the operator uses one endpoint and one region.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

DEFAULT_INTERVAL_SECONDS = 60.0
MANAGED_BY = "config-refresh-operator"
FIELD_MANAGER = "config-refresh-podsync"


@dataclasses.dataclass(frozen=True)
class PodSyncSettings:
    """What podSync needs to know about its environment."""

    reconcile_interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    operation_timeout_seconds: float = 30.0
    max_throttle_retries: int = 8

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PodSyncSettings:
        """Build settings from the environment, failing fast with the bad key named.

        Reads the same keys, in the same order, as ``refresh_operator.settings.load_settings`` (endpoint:
        CONFIG_REFRESH_AWS_ENDPOINT_URL, then AWS_ENDPOINT_URL; region: AWS_REGION, then AWS_DEFAULT_REGION),
        without requiring the core's own keys (the queue URL), so podSync also runs on its own.
        """
        env = os.environ if environ is None else environ
        key = "CONFIG_REFRESH_PODSYNC_INTERVAL_SECONDS"
        raw = env.get(key, "").strip()
        interval = DEFAULT_INTERVAL_SECONDS
        if raw:
            try:
                interval = float(raw)
            except ValueError:
                raise ValueError(f"{key} must be a number of seconds, got {raw!r}") from None
            if not 0 < interval <= 86400:
                raise ValueError(f"{key} must be > 0 and <= 86400, got {raw!r}")
        return cls(
            reconcile_interval_seconds=interval,
            aws_region=_first(env, "AWS_REGION", "AWS_DEFAULT_REGION"),
            aws_endpoint_url=_first(env, "CONFIG_REFRESH_AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL"),
        )


def _first(env: Mapping[str, str], *keys: str) -> str | None:
    """The first of `keys` set to a non-blank value."""
    for key in keys:
        value = env.get(key, "").strip()
        if value:
            return value
    return None
