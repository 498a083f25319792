#!/usr/bin/env bash
# Fails when the operator chart's CRDs drift from crds/, the single source of truth.
#
# The chart's crds/ holds one symlink per file of the top-level crds/ (Helm follows symlinks when it lints,
# packages and installs a chart directory, and `helm package` stores the content), plus kopf's own peering
# CRDs, which are not ours. A symlink cannot drift, but it can dangle, be replaced by a stale copy, or miss
# a CRD added later: this script catches all three, and `make lint` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

source_dir=crds
chart_dir=charts/config-refresh-operator/crds
own_prefix=configrefresh.io_
status=0

shopt -s nullglob
sources=("$source_dir"/*.yaml)
if [ "${#sources[@]}" -eq 0 ]; then
  echo "error: $source_dir/ has no CRD files" >&2
  exit 1
fi

for source in "${sources[@]}"; do
  name=$(basename "$source")
  target="$chart_dir/$name"
  if [ ! -e "$target" ]; then
    echo "error: $target is missing (or a dangling link); create it with: ln -s ../../../crds/$name $target" >&2
    status=1
  elif ! cmp -s "$source" "$target"; then
    echo "error: $target differs from $source; replace it with: ln -sf ../../../crds/$name $target" >&2
    status=1
  elif [ ! -L "$target" ]; then
    echo "error: $target is a copy; make it a symlink so it cannot drift: ln -sf ../../../crds/$name $target" >&2
    status=1
  fi
done

for target in "$chart_dir"/"$own_prefix"*.yaml; do
  name=$(basename "$target")
  if [ ! -e "$source_dir/$name" ]; then
    echo "error: $target has no source in $source_dir/ (a removed or renamed CRD); delete it" >&2
    status=1
  fi
done

if [ "$status" -eq 0 ]; then
  echo "chart CRDs match $source_dir/ (${#sources[@]} files)"
fi
exit "$status"
