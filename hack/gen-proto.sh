#!/usr/bin/env bash
# Regenerates the Python stubs and .pyi types from protos/ into the configrefresh.v1 package.
# The output is committed; `make lint` fails when running this would change it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PATH="$(dirname "$PY"):$PATH"
out=protos
rm -f protos/configrefresh/v1/*_pb2*.py protos/configrefresh/v1/*_pb2*.pyi
"$PY" -m grpc_tools.protoc -I protos \
  --python_out="$out" --mypy_out="$out" \
  --grpc_python_out="$out" --mypy_grpc_out="$out" \
  protos/configrefresh/v1/*.proto
