"""`--wait` and `status --watch`: follow rollouts until final, show progress, and report the outcome."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from configctl.exitcodes import ExitCode
from configctl.kube import Kube
from configctl.output import Output
from configctl.rollouts import FAILED_PHASES
from configctl.status import list_rollouts
from configctl.view import ProgressView, Row, row_for, show_failed_instances, show_rollouts
from configctl.wait import Expectation, Target, Tracked, expectations, wait_for


def _rows(tracked: Sequence[Tracked]) -> list[Row]:
    rows = []
    for t in tracked:
        if t.rollout is not None:
            rows.append(row_for(t.rollout))
        else:
            e = t.expectation
            route = e.route or "any route"
            rows.append(
                Row(
                    f"{e.target.name}@{e.target.version}@{route}",
                    f"{e.target.name} v{e.target.version} [{route}]",
                    "NotCreated",
                    0,
                    0,
                )
            )
    return rows


def wait_and_report(
    output: Output,
    kube: Kube,
    targets: Sequence[Target],
    *,
    timeout: float,
    expected: Sequence[Expectation] | None = None,
    ignore: frozenset[str] = frozenset(),
) -> tuple[ExitCode, dict[str, Any]]:
    """Wait for the rollouts of `targets` (or the `expected` ones), showing progress; the exit code and
    the machine-readable report."""
    uncovered: list[Target] = []
    if expected is None:
        expected, uncovered = expectations(kube, targets)
    for target in uncovered:
        output.info(f"warning: no ConfigRoute in {kube.namespace} claims {target.name}; nothing to wait for")
    started = time.monotonic()
    with ProgressView(output) as view:
        code, tracked = wait_for(
            kube, expected, timeout=timeout, ignore=ignore, on_progress=lambda t: view.update(_rows(t))
        )
    elapsed = time.monotonic() - started
    rollouts = [t.rollout for t in tracked if t.rollout is not None]
    failed = [r for r in rollouts if r.phase in FAILED_PHASES]
    pending = [t for t in tracked if not t.final]
    if code is ExitCode.OK:
        output.info(f"Live: {len(tracked)} rollout(s) Succeeded in {elapsed:.1f}s.")
    elif code is ExitCode.ROLLOUT_FAILED:
        show_failed_instances(output, failed)
        output.error(f"{len(failed)} rollout(s) did not reach every instance.")
    else:
        for t in pending:
            what = t.rollout.phase if t.rollout is not None else "no ConfigRefresh yet"
            output.error(f"timed out: {t.expectation.target.name} v{t.expectation.target.version} ({what})")
        if failed:
            show_failed_instances(output, failed)
        output.error(f"timed out after {timeout:.0f}s: {len(pending)} rollout(s) not final.")
    data = {
        "result": code.name,
        "elapsedSeconds": round(elapsed, 3),
        "rollouts": [r.as_dict() for r in rollouts],
        "missing": [
            {
                "name": t.expectation.target.name,
                "version": t.expectation.target.version,
                "route": t.expectation.route,
            }
            for t in tracked
            if t.rollout is None
        ],
        "uncovered": [{"name": t.name, "version": t.version} for t in uncovered],
    }
    return code, data


def run_status(
    output: Output,
    kube: Kube,
    *,
    parameter: str | None,
    route: str | None,
    limit: int,
    watch: bool,
    watch_seconds: float,
) -> ExitCode:
    """`configctl status`: rollouts newest first; with `watch`, followed until final or the timeout."""
    rollouts = list_rollouts(kube, parameter=parameter, route=route, limit=limit)
    if watch and rollouts:
        deadline = time.monotonic() + watch_seconds
        with ProgressView(output) as view:
            while True:
                view.update([row_for(r) for r in rollouts])
                if all(r.final for r in rollouts):
                    break
                if time.monotonic() >= deadline:
                    break
                time.sleep(1.0)
                rollouts = list_rollouts(kube, parameter=parameter, route=route, limit=limit)
    if output.machine:
        output.document({"namespace": kube.namespace, "rollouts": [r.as_dict() for r in rollouts]})
    elif not rollouts:
        output.info(f"No rollouts in {kube.namespace}.")
    else:
        show_rollouts(output, rollouts)
    if watch and not all(r.final for r in rollouts):
        return ExitCode.WAIT_TIMEOUT
    return ExitCode.OK
