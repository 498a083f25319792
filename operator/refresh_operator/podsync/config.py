"""podSync's settings, read once from the environment.

Kept apart from the operator core's settings on purpose: podSync must run (and be tested) on its own with
``kopf run -m refresh_operator.podsync.handlers``. ``PodSyncSettings.from_env`` is the single seam the core
replaces when it wires podSync in (it can build ``PodSyncSettings`` from its own typed settings instead).
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

        Replace with the core's settings once ``refresh_operator.settings`` exists (the endpoint override and
        region must come from the same place for every AWS client of the operator).
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
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL_SERVICEDISCOVERY")
            or env.get("AWS_ENDPOINT_URL")
            or None,
        )
