"""Shared test set-up: fixtures come from the dev stack's pytest plugins, tiers from folders.

Each folder is a tier (README.md, "The two commands"): tests/unit, tests/integration, tests/e2e,
tests/reliability. The marker of a tier is added here from the folder, so `-m "not e2e"` selects by tier
without every test repeating it. tests/unit is grouped by subject (config_service/, configctl/, operator/,
podsync/, fanout/, charts/, devstack/, common/); its in-memory fakes of AWS, Kubernetes and Parameter Store
are in tests/unit/fakes/. Every folder is a package, so helpers are imported by their full name
(`tests.unit.fakes.kube`, `tests.reliability.checks`), never from a conftest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "devstack.fixtures.aws",
    "devstack.fixtures.kube",
    "devstack.fixtures.services",
    "devstack.fixtures.stack",
]

_TIER_BY_FOLDER = {
    "unit": "unit",
    "integration": "integration",
    "e2e": "e2e",
    "reliability": "e2e",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests_root = Path(__file__).parent
    for item in items:
        relative = Path(str(item.fspath)).relative_to(tests_root)
        tier = _TIER_BY_FOLDER.get(relative.parts[0])
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
