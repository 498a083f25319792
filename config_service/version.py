"""The running version, for the `*_build_info` metrics of both programs.

Read from the installed distribution's metadata (pyproject.toml's `version`), so the metric says what pip
installed, not what a constant in the code claims; "unknown" when the code runs without being installed.
"""

from __future__ import annotations

import platform
from importlib import metadata

DISTRIBUTION = "config-refresh"


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def build_labels() -> dict[str, str]:
    """The labels of `config_refresh_build_info` and `config_service_build_info`: version and python."""
    return {"version": version(), "python": platform.python_version()}
