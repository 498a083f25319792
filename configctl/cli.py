"""Entry point of `configctl`."""

from __future__ import annotations

import sys


def main() -> None:
    print("configctl is not available yet (see issue 8)", file=sys.stderr)
    sys.exit(2)
