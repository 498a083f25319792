"""Builds promtool from its Go module, once per machine, beside the test control plane's binaries.

Prometheus publishes its Go module as `github.com/prometheus/prometheus` with versions `v0.<minor>.<patch>`
for Prometheus 3.<minor>.<patch> (v0.316.0 is Prometheus 3.16.0); its go.mod has no replace directives, so
`go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0` works, as it does for helm. The binary
lands in `<controlplane cache>/promtool-<version>/bin/promtool`, a directory of its own so that adding it
never changes the control plane's cache key. `make lint` uses it for `promtool check rules` and `promtool
test rules` (hack/check-prometheus-rules.sh).
"""

from __future__ import annotations

import fcntl
import sys
from pathlib import Path

from devstack.controlplane.build import ControlPlaneBuildError, _go, _go_env, _install, cache_root

PROMETHEUS_MODULE_VERSION = "0.316.0"
"""Prometheus 3.16.0 (checked with `go list -m -versions github.com/prometheus/prometheus`)."""


def promtool_path(root: Path | None = None) -> Path:
    return (root or cache_root() / f"promtool-{PROMETHEUS_MODULE_VERSION}") / "bin" / "promtool"


def ensure_promtool(root: Path | None = None) -> Path:
    """The cached promtool, built first if missing; raises ControlPlaneBuildError if it cannot be."""
    target = promtool_path(root)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent.parent / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not target.exists():
                gobin = target.parent.parent / "gobin"
                gobin.mkdir(parents=True, exist_ok=True)
                print(f"[promtool] building v{PROMETHEUS_MODULE_VERSION} from Go modules ...", flush=True)
                package = f"github.com/prometheus/prometheus/cmd/promtool@v{PROMETHEUS_MODULE_VERSION}"
                _go(["install", "-ldflags=-s -w", package], cwd=gobin, env=_go_env({"GOBIN": str(gobin)}))
                _install(gobin / "promtool", target)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def main() -> int:
    try:
        print(ensure_promtool())
    except ControlPlaneBuildError as error:
        print(f"promtool: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
