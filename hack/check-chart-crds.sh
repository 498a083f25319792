#!/usr/bin/env bash
# Fails when a chart's CRDs drift from crds/, the single source of truth.
#
# Two charts carry the CRDs: the operator chart in crds/ (Helm installs them on first install only) and
# config-refresh-crds in files/crds/ (rendered as templates, so `helm upgrade` upgrades them). Each holds one
# symlink per file of the top-level crds/ (Helm follows symlinks when it lints, packages and installs a
# chart directory, and `helm package` stores the content). kopf's own peering CRDs are not ours: the
# operator chart holds the file, the CRDs chart links to it. A symlink cannot drift, but it can dangle, be
# replaced by a stale copy, or miss a CRD added later: this script catches all three, and `make lint` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

source_dir=crds
own_prefix=configrefresh.io_
kopf_file=charts/config-refresh-operator/crds/kopf.dev_peerings.yaml
status=0

shopt -s nullglob
sources=("$source_dir"/*.yaml)
if [ "${#sources[@]}" -eq 0 ]; then
  echo "error: $source_dir/ has no CRD files" >&2
  exit 1
fi

check_chart() {
  local chart_dir=$1 up=$2 source target name
  for source in "${sources[@]}"; do
    name=$(basename "$source")
    target="$chart_dir/$name"
    if [ ! -e "$target" ]; then
      echo "error: $target is missing (or a dangling link); create it with: ln -s $up/crds/$name $target" >&2
      status=1
    elif ! cmp -s "$source" "$target"; then
      echo "error: $target differs from $source; replace it with: ln -sf $up/crds/$name $target" >&2
      status=1
    elif [ ! -L "$target" ]; then
      echo "error: $target is a copy; make it a symlink so it cannot drift: ln -sf $up/crds/$name $target" >&2
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
}

check_chart charts/config-refresh-operator/crds ../../..
check_chart charts/config-refresh-crds/files/crds ../../../..
kopf_link=charts/config-refresh-crds/files/crds/kopf.dev_peerings.yaml
if [ ! -L "$kopf_link" ] || ! cmp -s "$kopf_file" "$kopf_link"; then
  echo "error: $kopf_link must link to $kopf_file: ln -sf ../../../config-refresh-operator/crds/kopf.dev_peerings.yaml $kopf_link" >&2
  status=1
fi

if [ "$status" -eq 0 ]; then
  echo "both charts' CRDs match $source_dir/ (${#sources[@]} files) and kopf's peering CRDs"
fi
exit "$status"
