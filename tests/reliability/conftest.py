"""Reliability suite fixtures. The stack itself (`make_stack`, `stack`, `operator_process`) comes from the
pytest plugin devstack.fixtures.stack, as for the e2e tier; the checks every test shares are in checks.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pytest

from devstack.services.fleet import Instance
from tests.reliability.checks import VersionWatch


@pytest.fixture
def version_watch() -> Iterator[Callable[..., VersionWatch]]:
    """Factory: start a VersionWatch over instances; stopped at test end."""
    started: list[VersionWatch] = []

    def start(instances: Iterable[Instance], prefix: str, interval: float = 0.3) -> VersionWatch:
        watch = VersionWatch(instances, prefix, interval)
        watch.__enter__()
        started.append(watch)
        return watch

    yield start
    for watch in started:
        watch.stop()
