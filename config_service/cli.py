"""Entry point of `config-service`: settings from flags and environment, JSON logs, then `serve()`.

A settings error is printed as one line naming the key, with exit code 2, before anything starts.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from config_service import logs
from config_service.server import serve
from config_service.settings import Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> None:
    """Run the service until SIGTERM; exit 0 after a graceful stop."""
    try:
        settings = Settings.from_sources(argv)
    except SettingsError as error:
        print(f"config-service: configuration error: {error}", file=sys.stderr)
        sys.exit(2)
    logs.configure(level=settings.log_level, instance_id=settings.instance_id)
    sys.exit(asyncio.run(serve(settings)))
