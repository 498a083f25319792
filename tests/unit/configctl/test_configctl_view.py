"""Live progress: a line per change in CI logs, progress bars on a terminal, silence for machines."""

from __future__ import annotations

import io

from configctl.output import Mode, Output
from configctl.view import ProgressView, Row


def rows(phase: str, done: int) -> list[Row]:
    return [Row("r-v2", "/config-service/acme/x v2 [orders]", phase, done, 10)]


def run(mode: Mode) -> str:
    stdout = io.StringIO()
    output = Output(mode, stdout=stdout, stderr=io.StringIO())
    output.console.width = 160
    with ProgressView(output) as view:
        view.update(rows("InProgress", 3))
        view.update(rows("InProgress", 3))
        view.update(rows("Succeeded", 10))
    return stdout.getvalue()


def test_plain_mode_prints_one_line_per_change() -> None:
    assert run(Mode.PLAIN).splitlines() == [
        "/config-service/acme/x v2 [orders]: InProgress 3/10",
        "/config-service/acme/x v2 [orders]: Succeeded 10/10",
    ]


def test_table_mode_draws_progress_bars() -> None:
    text = run(Mode.TABLE)
    assert "/config-service/acme/x v2 [orders]" in text
    assert "10/10" in text
    assert "Succeeded" in text


def test_machine_modes_print_nothing_while_waiting() -> None:
    assert run(Mode.JSON) == ""


def test_failed_instances_table_keeps_brackets_in_errors() -> None:
    from configctl.rollouts import InstanceResult, Rollout
    from configctl.view import show_failed_instances

    stderr = io.StringIO()
    output = Output(Mode.TABLE, stdout=io.StringIO(), stderr=stderr)
    output.err_console.width = 160
    rollout = Rollout(
        object_name="r",
        route="orders",
        parameter="/config-service/acme/x",
        parameter_hash="h",
        version=2,
        trigger="event",
        phase="PartiallyFailed",
        targets=3,
        refreshed=1,
        failed=1,
        stale=0,
        gone=1,
        latency_ms=None,
        created="",
        superseded_by=None,
        instances=(
            InstanceResult("svc-3", "127.0.0.13:1", "Failed", None, 3, "[Errno 111] refused"),
            InstanceResult("svc-4", "127.0.0.14:1", "Gone", None, 3, "deregistered during the rollout"),
        ),
        instances_truncated=False,
    )
    show_failed_instances(output, [rollout])
    text = stderr.getvalue()
    assert "/config-service/acme/x v2 [orders]: PartiallyFailed, 1 of 3 instance(s) failed" in text
    assert "svc-3" in text
    assert "[Errno 111] refused" in text
    assert "svc-4" not in text  # Gone is not a failure
    assert rollout.done_count == 3
    from configctl.view import rollout_line

    line = rollout_line(rollout)
    assert "refreshed=1/2 " in line
    assert " failed=1 gone=1 " in line
