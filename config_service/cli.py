"""Entry point of `config-service`."""

from __future__ import annotations

import sys


def main() -> None:
    print("config-service is not available yet (see issue 4)", file=sys.stderr)
    sys.exit(2)
