#!/usr/bin/env bash
# Lints what ships besides the Python code: the two Helm charts, the Dockerfile and the CloudFormation
# template, so that `make lint` fails on a broken chart, an unpinned image or a risky IAM policy.
#
#   1. hack/check-chart-crds.sh   the charts' CRDs are the files in crds/
#   2. helm lint --strict          every chart, with every ci/*-values.yaml set (the operator chart has no
#                                  complete defaults: aws.queueUrl is required)
#      helm package                each chart packages, the operator's and the CRDs' with the CRD files' content (not links)
#   3. hadolint                    Dockerfile (settings in .hadolint.yaml)
#   4. cfn-lint                    deploy/aws/*.yaml
#   5. checkov                     the charts rendered with every ci/ value set (kubernetes checks on what a
#                                  user would actually apply), the Dockerfile and the template; every
#                                  suppression sits next to its resource with a written reason
#                                  (checkov.io/skipN annotations, Metadata.checkov.skip)
#
# helm is the control plane's build (make controlplane) unless HELM is set. checkov pins dependencies
# that conflict with the project's (boto3, packaging), so it lives in its own virtualenv, .venv-lint/,
# created here on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION=3.3.30
LINT_VENV=${LINT_VENV:-.venv-lint}
NAMESPACE=config-refresh

say() { printf '\n== %s\n' "$*"; }
# Helm prints a line per followed symlink (the chart's CRDs); it is expected, so keep it out of the output.
quiet_links() { grep -v 'found symbolic link in path' >&2 || true; }

HELM=${HELM:-$(PYTHONPATH=hack .venv/bin/python -c 'from devstack.controlplane.build import binaries; print(binaries().helm)')}
if [ ! -x "$HELM" ]; then
  echo "error: helm not found at $HELM; build it with 'make controlplane' (or set HELM=/path/to/helm)" >&2
  exit 2
fi
if [ ! -x "$LINT_VENV/bin/checkov" ]; then
  say "creating $LINT_VENV with checkov $CHECKOV_VERSION"
  python3 -m venv "$LINT_VENV"
  "$LINT_VENV/bin/python" -m pip install -q --upgrade pip
  "$LINT_VENV/bin/python" -m pip install -q "checkov==$CHECKOV_VERSION"
fi

say "chart CRDs against crds/"
hack/check-chart-crds.sh

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT

for chart in charts/*/; do
  chart=${chart%/}
  name=$(basename "$chart")
  say "helm lint --strict $chart"
  for values in "$chart"/ci/*-values.yaml; do
    "$HELM" lint --strict "$chart" --values "$values" 2> >(quiet_links) | grep -E 'ERROR|WARNING|failed' || true
    "$HELM" lint --strict "$chart" --values "$values" >/dev/null 2>&1 \
      || { echo "error: helm lint --strict $chart --values $values failed" >&2; exit 1; }
    set_name=$(basename "$values" -values.yaml)
    "$HELM" template "$name" "$chart" --namespace "$NAMESPACE" --include-crds --values "$values" \
      > "$rendered/$name-$set_name.yaml" 2> >(quiet_links)
    echo "rendered $name with $values"
  done
done

say "helm package"
for chart in charts/*/; do
  "$HELM" package "$chart" --destination "$rendered/packages" 2> >(quiet_links)
done
mkdir -p "$rendered/unpacked"
tar -xzf "$rendered"/packages/config-refresh-operator-*.tgz -C "$rendered/unpacked"
tar -xzf "$rendered"/packages/config-refresh-crds-*.tgz -C "$rendered/unpacked"
for source in crds/*.yaml; do
  for packaged in "$rendered/unpacked/config-refresh-operator/crds/$(basename "$source")" \
    "$rendered/unpacked/config-refresh-crds/files/crds/$(basename "$source")"; do
    { [ -f "$packaged" ] && [ ! -L "$packaged" ] && cmp -s "$source" "$packaged"; } \
      || { echo "error: the packaged chart does not carry $source as a file at ${packaged#"$rendered"/unpacked/}" >&2; exit 1; }
  done
done
echo "packaged CRDs match crds/ (operator chart and CRDs chart)"

say "hadolint Dockerfile"
.venv/bin/hadolint Dockerfile && echo "no findings"

say "cfn-lint deploy/aws"
.venv/bin/cfn-lint deploy/aws/*.yaml && echo "no findings"

checkov() {
  "$LINT_VENV/bin/checkov" --quiet --compact --skip-download --output cli "$@"
}
say "checkov: rendered charts"
checkov --framework kubernetes --directory "$rendered"
say "checkov: Dockerfile"
checkov --framework dockerfile --file Dockerfile
say "checkov: CloudFormation"
checkov --framework cloudformation --directory deploy/aws
echo "deploy lint passed"
