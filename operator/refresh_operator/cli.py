"""Entry point of `config-refresh-operator`."""

from __future__ import annotations

import sys


def main() -> None:
    print("config-refresh-operator is not available yet (see issue 5)", file=sys.stderr)
    sys.exit(2)
