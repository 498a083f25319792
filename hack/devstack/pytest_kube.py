"""pytest plugin: a real kube-apiserver + etcd for the e2e tier (`control_plane`, `kube_namespace`).

One control plane per test session (starting it costs seconds; building it, minutes, once per machine).
The fixture builds the binaries if they are missing and FAILS, never skips, when it cannot: an e2e tier
that silently skips is a green run that proved nothing. When a test that used the control plane fails, the
tails of the etcd and kube-apiserver logs are attached to its report. Each test gets its own namespace;
namespaces are never finalized here (no controller-manager), so they are simply left Terminating.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Generator, Iterator
from types import FrameType

import pytest

from devstack.controlplane import ControlPlane, ControlPlaneError
from devstack.controlplane_build import ControlPlaneBuildError, ensure_built

_PLANE_KEY = pytest.StashKey[ControlPlane]()


def _install_sigterm_teardown(plane: ControlPlane) -> None:
    """On SIGTERM (CI cancelling a job) stop the servers before dying, so no etcd is orphaned."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        return

    def _on_sigterm(signum: int, frame: FrameType | None) -> None:
        plane.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, _on_sigterm)


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """A running etcd + kube-apiserver (RBAC on, admin kubeconfig); stopped at the end of the session."""
    try:
        binaries = ensure_built()
    except ControlPlaneBuildError as exc:
        pytest.fail(f"the e2e control plane is unavailable: {exc}", pytrace=False)
    try:
        plane = ControlPlane.start(binaries=binaries)
    except ControlPlaneError as exc:
        pytest.fail(f"the e2e control plane did not start: {exc}", pytrace=False)
    request.config.stash[_PLANE_KEY] = plane
    _install_sigterm_teardown(plane)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def kube_namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace with the CRDs applied; deleted (left Terminating: nothing finalizes it) after."""
    control_plane.ensure_crds()
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"t-{stem}-{uuid.uuid4().hex[:6]}"
    control_plane.create_namespace(name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, None, object]:
    report = yield
    if not isinstance(report, pytest.TestReport) or not report.failed:
        return report
    if "control_plane" not in getattr(item, "fixturenames", ()):
        return report
    plane = item.config.stash.get(_PLANE_KEY, None)
    if plane is not None:
        report.sections.append(("control plane logs (tails)", plane.log_tails()))
    return report
