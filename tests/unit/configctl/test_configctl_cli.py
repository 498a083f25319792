"""The command line itself: help with examples and the exit-code table, durations, usage errors."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from configctl.cli import app, parse_duration
from configctl.exitcodes import ExitCode, help_table

runner = CliRunner()


@pytest.mark.parametrize("command", ["apply", "diff", "status", "refresh"])
def test_every_command_has_help_with_an_example_and_exit_codes(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
    assert f"configctl {command}" in result.output
    assert "wait: rollouts not final within --timeout" in result.output


def test_top_level_help_lists_the_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for code in ExitCode:
        assert f"{int(code):>3}  " in result.output
    assert len(help_table().splitlines()) == len(ExitCode)


def test_exit_codes_are_distinct_and_stable() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "ERROR": 1,
        "USAGE": 2,
        "INVALID_INPUT": 3,
        "AWS_ERROR": 4,
        "APPLY_PARTIAL": 5,
        "ROLLOUT_FAILED": 6,
        "WAIT_TIMEOUT": 7,
        "KUBE_ERROR": 8,
        "NOT_FOUND": 9,
        "CHANGES_PENDING": 10,
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2m", 120.0), ("90s", 90.0), ("90", 90.0), ("1h", 3600.0), ("1m30s", 90.0), ("0.5s", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "2x", "m"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration(text)


def test_missing_prefix_is_a_usage_error(tmp_path: object) -> None:
    result = runner.invoke(app, ["apply", str(tmp_path)])
    assert result.exit_code == ExitCode.USAGE
