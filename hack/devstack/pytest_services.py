"""pytest plugin: `service_fleet`, a factory of real config-service processes (devstack.services).

`service_fleet(count, local_aws=..., prefix=..., auth=..., extra_args=...)` starts `count` instances and
waits until each reports SERVING (pass `wait=False` to watch the bootstrap yourself, `start=False` to
start them later). Several fleets in one test get distinct instance ids and addresses. Every fleet is
stopped at the end of the test; when the test failed, the tails of the instances' logs are attached to
its report.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from devstack.services import AuthMode, AwsEndpoint, ServiceFleet

_FLEETS_KEY = pytest.StashKey[list[ServiceFleet]]()

FleetFactory = Callable[..., ServiceFleet]


@pytest.fixture
def service_fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FleetFactory]:
    """A factory of ServiceFleet objects; all are stopped when the test ends."""
    fleets: list[ServiceFleet] = []
    request.node.stash[_FLEETS_KEY] = fleets

    def factory(
        count: int,
        *,
        local_aws: AwsEndpoint,
        prefix: str | None = None,
        auth: AuthMode = "insecure",
        tls: bool = False,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        start: bool = True,
        wait: bool = True,
        timeout: float = 120.0,
        **kwargs: Any,
    ) -> ServiceFleet:
        first_index = sum(len(fleet) for fleet in fleets)
        fleet = ServiceFleet(
            count,
            local_aws=local_aws,
            workdir=tmp_path / f"fleet-{len(fleets)}",
            prefix=prefix,
            auth=auth,
            tls=tls,
            extra_args=extra_args,
            env=env,
            first_index=first_index,
            **kwargs,
        )
        fleets.append(fleet)
        if start:
            fleet.start()
            if wait:
                fleet.wait_serving(timeout)
        return fleet

    try:
        yield factory
    finally:
        for fleet in fleets:
            fleet.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, None, object]:
    report = yield
    if isinstance(report, pytest.TestReport) and report.failed:
        for index, fleet in enumerate(item.stash.get(_FLEETS_KEY, [])):
            report.sections.append((f"config-service fleet {index} logs (tails)", fleet.log_tails()))
    return report
