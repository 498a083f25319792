"""CI's report check: every tier ran, nothing skipped, and nothing collected went missing from the report."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

_SCRIPT = Path(__file__).resolve().parents[3] / "hack" / "check-junit.py"


@pytest.fixture(scope="module")
def check_junit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_junit", _SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(tmp_path: Path, cases: list[tuple[str, bool]]) -> str:
    rows = "".join(
        f'<testcase classname="{classname}" name="t{i}">{"<skipped/>" if skipped else ""}</testcase>'
        for i, (classname, skipped) in enumerate(cases)
    )
    path = tmp_path / "junit.xml"
    path.write_text(f'<testsuites><testsuite name="pytest">{rows}</testsuite></testsuites>')
    return str(path)


ALL_TIERS = [
    ("tests.unit.operator.test_a", False),  # unit tests sit in folders by subject
    ("tests.integration.test_b", False),
    ("tests.e2e.test_images", False),
    ("tests.reliability.test_d", False),
]


def test_a_run_of_every_tier_with_nothing_missing_passes(check_junit: ModuleType, tmp_path: Path) -> None:
    ran, skipped = check_junit.executed_cases(_report(tmp_path, ALL_TIERS))
    assert check_junit.problems_of(ran, skipped, expected=4) == []


def test_a_missing_reliability_tier_fails(check_junit: ModuleType, tmp_path: Path) -> None:
    ran, skipped = check_junit.executed_cases(_report(tmp_path, ALL_TIERS[:3]))
    assert check_junit.problems_of(ran, skipped, expected=None) == ["tier tests.reliability ran no test"]


def test_a_skipped_test_fails(check_junit: ModuleType, tmp_path: Path) -> None:
    ran, skipped = check_junit.executed_cases(
        _report(tmp_path, [*ALL_TIERS, ("tests.unit.config_service.test_e", True)])
    )
    assert check_junit.problems_of(ran, skipped, expected=5) == [
        "skipped: tests.unit.config_service.test_e::t4"
    ]


def test_a_missing_image_test_fails_even_when_the_e2e_tier_ran(
    check_junit: ModuleType, tmp_path: Path
) -> None:
    cases = [*ALL_TIERS[:2], ("tests.e2e.test_crds", False), ALL_TIERS[3]]
    modules, skipped = check_junit.executed_cases(_report(tmp_path, cases))
    assert check_junit.problems_of(modules, skipped, expected=4) == ["tests.e2e.test_images ran no test"]


def test_fewer_executed_than_collected_fails(check_junit: ModuleType) -> None:
    modules = Counter(
        {
            "tests.unit.test_a": 3,
            "tests.integration.test_b": 1,
            "tests.e2e.test_images": 1,
            "tests.reliability.t": 1,
        }
    )
    problems = check_junit.problems_of(modules, [], expected=9)
    assert problems == ["6 test cases in the report, but 9 were collected: 3 never ran"]


@pytest.mark.parametrize(
    ("line", "count"),
    [
        ("737 tests collected in 3.1s", 737),
        ("737/759 tests collected (22 deselected) in 3.1s", 737),
        ("1 test collected in 0.1s", 1),
    ],
)
def test_the_collected_count_is_read_from_pytest_summary(
    check_junit: ModuleType, line: str, count: int
) -> None:
    match = check_junit._COLLECTED.search(f"tests/unit/x.py::t\n\n{line}\n")
    assert match is not None
    selected, total, _ = match.groups()
    assert int(selected or total) == count
