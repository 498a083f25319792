#!/usr/bin/env bash
# Fails when the committed generated code differs from what protos/ generates now.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r protos "$tmp/"
(cd "$tmp" && mkdir -p hack && cp "$OLDPWD/hack/gen-proto.sh" hack/ && PYTHON="$OLDPWD/.venv/bin/python" hack/gen-proto.sh >/dev/null)
if ! diff -r -q protos/configrefresh "$tmp/protos/configrefresh" -x __pycache__; then
  echo "error: generated protobuf code is out of date; run 'make proto' and commit the result" >&2
  exit 1
fi
echo "protobuf stubs up to date"
