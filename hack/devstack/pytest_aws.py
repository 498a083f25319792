"""pytest plugin: the local AWS stack as fixtures (loaded by tests/conftest.py).

`local_aws_server` starts one moto process per session (devstack.local_aws.LocalAws); `local_aws` hands
each test that same process wiped and provisioned afresh with the default settings, so no test sees
another's parameters, messages, instances, counters or faults. A test that needs other settings calls
`local_aws.reset(prefix=..., max_receive_count=..., visibility_timeout=...)` itself.

If the server cannot start the fixture fails the test with the server's log: the integration tier
never skips silently. The process is stopped by the session finalizer, and by atexit and the server's
own parent watch if pytest dies first.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.local_aws import DEFAULT_PREFIX, LocalAws, LocalAwsError


@pytest.fixture(scope="session")
def local_aws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAws]:
    """One moto server process for the whole session, on 127.0.0.1 and a free port."""
    log_path = tmp_path_factory.mktemp("local-aws") / "moto-server.log"
    try:
        stack = LocalAws.start(log_path=log_path)
    except LocalAwsError as exc:
        pytest.fail(f"the local AWS stack did not start: {exc}", pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def local_aws(local_aws_server: LocalAws) -> LocalAws:
    """The session's server, reset and provisioned with the default prefix and redrive settings."""
    local_aws_server.reset(prefix=DEFAULT_PREFIX, max_receive_count=3, visibility_timeout=30)
    local_aws_server.owner_namespace = None
    return local_aws_server
