"""Reads a pytest JUnit report and fails unless every tier ran and nothing was skipped.

CI must never let an e2e tier that silently did not run pass as green: a missing control plane makes the
fixtures fail, and this check catches anything that was skipped or deselected instead.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter

REQUIRED_TIERS = ("tests.unit", "tests.integration", "tests.e2e")
# Modules that must have run at least one test: the images built and run under podman (issue 18).
REQUIRED_MODULES = ("tests.e2e.test_images",)


def main(path: str) -> int:
    root = ET.parse(path).getroot()  # noqa: S314 - our own pytest report
    ran: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    skipped: list[str] = []
    for case in root.iter("testcase"):
        classname = case.get("classname", "")
        tier = ".".join(classname.split(".")[:2])
        ran[tier] += 1
        modules[classname] += 1
        if case.find("skipped") is not None:
            skipped.append(f"{classname}::{case.get('name')}")
    print("tests run per tier: " + ", ".join(f"{tier}={count}" for tier, count in sorted(ran.items())))
    problems = [f"tier {tier} ran no test" for tier in REQUIRED_TIERS if ran[tier] == 0]
    problems += [f"{module} ran no test" for module in REQUIRED_MODULES if modules[module] == 0]
    problems += [f"skipped: {name}" for name in skipped]
    for problem in problems:
        print(f"ci: error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
