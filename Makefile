# config-refresh: the two commands a newcomer needs are `make demo` and `make test`.
# Both do their own set-up (virtualenv, Python deps, the Go-built control plane) on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install proto lint test test-fast controlplane containers image cluster-up cluster-down demo demo-up demo-down bench soak clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# Three source roots (operator/, protos/, .) make setuptools' editable install use its import finder,
	@# which always prints an informational "Editable installation ... folders with the same name" warning;
	@# the finder maps exactly our four packages (never operator/ itself), so the note does not apply here.
	PYTHONWARNINGS="ignore:Editable installation:UserWarning" \
		$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with its dev dependencies (pinned by constraints.txt)

proto: $(STAMP) ## Regenerate the Python stubs from protos/
	PYTHON=$(BIN)/python hack/gen-proto.sh

controlplane: $(STAMP) ## Build kube-apiserver, etcd, kubectl and helm from Go modules (cached per version)
	$(BIN)/python hack/controlplane build

containers: ## podman, runc, debootstrap, the rlimits and the local base image (apt-get needs root; once per machine)
	hack/container-env.sh

image: ## Build both images (operator, config-service): Docker with the pinned base, else podman with the Debian-built one
	hack/build-images.sh

cluster-up: $(STAMP) controlplane ## Start a real one-node cluster (kubelet, containerd, scheduler, controller-manager; root)
	$(BIN)/python hack/cluster up

cluster-down: $(STAMP) ## Stop what cluster-up started and clean the host up (bridge, NAT rule, mounts)
	$(BIN)/python hack/cluster down

lint: $(STAMP) controlplane ## ruff, ruff format, mypy --strict, import contracts, module size, duplicate code, protobuf drift, helm lint, hadolint, cfn-lint, checkov, promtool
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python hack/check-module-size.py
	$(BIN)/pylint operator/refresh_operator config_service configctl configrefresh_api
	hack/check-proto-drift.sh
	$(BIN)/python hack/gen-values-table.py --check
	hack/lint-deploy.sh
	hack/check-prometheus-rules.sh

test: $(STAMP) controlplane containers ## Run every test tier: unit, integration (moto, real gRPC), e2e (real kube-apiserver, the images under podman)
	hack/run-pytest.sh tests -m "not slow" $(PYTEST_ARGS)

test-fast: $(STAMP) ## Unit and integration tiers only (chart rendering needs the cached helm); never used by CI
	hack/run-pytest.sh tests -m "not e2e and not slow" $(PYTEST_ARGS)

soak: $(STAMP) controlplane ## The long variants of the reliability suite
	hack/run-pytest.sh tests -m slow $(PYTEST_ARGS)

demo: $(STAMP) controlplane ## Run the main job on the embedded local stack, then clean up
	$(BIN)/python hack/demo.py

demo-up: $(STAMP) controlplane ## Start the local stack and leave it running (prints how to use it)
	$(BIN)/python hack/demo.py up

demo-down: $(STAMP) ## Stop what demo-up started
	$(BIN)/python hack/demo.py down

bench: $(STAMP) controlplane ## Run the benchmarks; rewrites docs/benchmarks.md and its plots
	$(BIN)/python -m bench

clean: ## Remove the virtualenv and caches (the control-plane build cache is kept)
	rm -rf $(VENV) .venv-lint .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
