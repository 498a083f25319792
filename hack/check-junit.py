"""Reads a pytest JUnit report and fails unless every tier ran, nothing was skipped and nothing went missing.

CI must never let a tier that silently did not run pass as green. A missing control plane makes the
fixtures fail (an error, not a pass); a skip shows in the report as `<skipped>`. What the report cannot show
is a test that never ran at all: one deselected by a marker expression, or lost to a collection that
stopped early. So the report's count is compared with a fresh `pytest --collect-only` of the same selection:
fewer executed than collected is a failure.

    hack/check-junit.py REPORT [--collect PYTEST-ARGS...]

Without `--collect` only the per-tier and skip checks run.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REQUIRED_TIERS = ("tests.unit", "tests.integration", "tests.e2e", "tests.reliability")
# Modules that must have run at least one test: the images built and run under podman (issue 18).
REQUIRED_MODULES = ("tests.e2e.test_images",)
_COLLECTED = re.compile(r"^(?:(\d+)/)?(\d+) tests? collected(?: \((\d+) deselected\))?", re.MULTILINE)


def executed_cases(path: str) -> tuple[Counter[str], list[str]]:
    """Per-module counts of the test cases in the report, and the names of the skipped ones."""
    root = ET.parse(path).getroot()  # noqa: S314 - our own pytest report
    modules: Counter[str] = Counter()
    skipped: list[str] = []
    for case in root.iter("testcase"):
        classname = case.get("classname", "")
        modules[classname] += 1
        if case.find("skipped") is not None:
            skipped.append(f"{classname}::{case.get('name')}")
    return modules, skipped


def tiers_of(modules: Counter[str]) -> Counter[str]:
    """Per-tier counts (`tests.<tier>`) from per-module counts."""
    tiers: Counter[str] = Counter()
    for module, count in modules.items():
        tiers[".".join(module.split(".")[:2])] += count
    return tiers


def collected_count(pytest_args: list[str]) -> int:
    """How many tests `pytest --collect-only` selects with these arguments."""
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *pytest_args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    match = _COLLECTED.search(result.stdout)
    if result.returncode != 0 or match is None:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(
            f"ci: error: pytest --collect-only {' '.join(pytest_args)} failed (exit {result.returncode})"
        )
    selected, total, _deselected = match.groups()
    return int(selected) if selected is not None else int(total)


def problems_of(modules: Counter[str], skipped: list[str], expected: int | None) -> list[str]:
    """Everything that makes the run not count as green."""
    ran = tiers_of(modules)
    problems = [f"tier {tier} ran no test" for tier in REQUIRED_TIERS if ran[tier] == 0]
    problems += [f"{module} ran no test" for module in REQUIRED_MODULES if modules[module] == 0]
    problems += [f"skipped: {name}" for name in skipped]
    executed = sum(ran.values())
    if expected is not None and executed < expected:
        missing = expected - executed
        problems.append(
            f"{executed} test cases in the report, but {expected} were collected: {missing} never ran"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report")
    parser.add_argument("--collect", nargs=argparse.REMAINDER, help="pytest arguments of the run to recount")
    args = parser.parse_args(argv)
    modules, skipped = executed_cases(args.report)
    expected = collected_count(args.collect) if args.collect else None
    ran = tiers_of(modules)
    print("tests run per tier: " + ", ".join(f"{tier}={count}" for tier, count in sorted(ran.items())))
    if expected is not None:
        print(f"executed {sum(ran.values())} of {expected} collected")
    problems = problems_of(modules, skipped, expected)
    for problem in problems:
        print(f"ci: error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
