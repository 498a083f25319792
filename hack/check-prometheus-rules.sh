#!/usr/bin/env bash
# Checks the operator chart's PrometheusRule with promtool (built from its Go module, cached per version:
# hack/devstack/controlplane/promtool.py): the chart renders the rule with every alert on, `promtool check rules`
# validates its syntax and PromQL, and `promtool test rules` runs tests/prometheus/rules-test.yaml (a unit
# test per alert). Run by `make lint`.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM=${HELM:-$(PYTHONPATH=hack .venv/bin/python -c 'from devstack.controlplane.build import binaries; print(binaries().helm)')}
PROMTOOL=${PROMTOOL:-$(PYTHONPATH=hack .venv/bin/python -m devstack.controlplane.promtool | tail -1)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$HELM" template rel charts/config-refresh-operator --namespace config-refresh \
  --values charts/config-refresh-operator/ci/default-values.yaml \
  --set prometheusRule.enabled=true \
  --set prometheusRule.deadLetterQueue.queueName=config-refresh-events-dlq \
  --show-only templates/operator-prometheusrule.yaml 2> >(grep -v 'found symbolic link in path' >&2) \
  | .venv/bin/python -c 'import sys, yaml; yaml.safe_dump(yaml.safe_load(sys.stdin)["spec"], sys.stdout)' \
  > "$work/rules.yaml"
cp tests/prometheus/rules-test.yaml "$work/"
"$PROMTOOL" check rules "$work/rules.yaml"
"$PROMTOOL" test rules "$work/rules-test.yaml"
