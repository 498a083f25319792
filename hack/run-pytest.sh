#!/usr/bin/env bash
# Runs pytest and refuses to call an empty run green: pytest exits 5 when it collected nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests; an empty run is a failure" >&2
  exit 1
fi
exit "$rc"
