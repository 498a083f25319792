"""The parts under a stack: the control plane and the local AWS stack, started together, stopped together.

`Parts.start()` brings up kube-apiserver + etcd (built once and cached) with the CRDs and the stack's
namespace, and the local AWS stack (moto with the change emitter) whose Cloud Map instances belong to
that namespace. devstack.stack.deploy and the builder (devstack.stack.builder) put instances, routes and
the operator onto them; the demo and the benchmarks start them here, the pytest plugin has the
session's. `port_free_on_every()` finds one refresh port for a whole fleet, as a pod template has.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from devstack.aws.local_aws import LocalAws
from devstack.controlplane import build as controlplane_build
from devstack.controlplane.plane import ControlPlane
from devstack.stack.operator import StackError

Say = Callable[[str], None]


def quiet(_: str) -> None:
    return None


def port_free_on_every(hosts: Sequence[str], *, taken: Collection[int] = ()) -> int:
    """A port free on each host right now and not in `taken` (ports already promised to instances)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = int(probe.getsockname()[1])
        if port in taken:
            continue
        try:
            for host in hosts[1:]:
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise StackError(f"no port free on all {len(hosts)} instance addresses")


@dataclass
class Parts:
    """A started control plane (CRDs installed, `namespace` created) and local AWS stack."""

    control_plane: ControlPlane
    local_aws: LocalAws
    namespace: str
    workdir: Path

    @classmethod
    def start(cls, *, namespace: str, workdir: Path, detach: bool = False, say: Say = quiet) -> Parts:
        """Start both (`detach`: in sessions of their own, to outlive this process); on failure, stop what
        was started."""
        workdir.mkdir(parents=True, exist_ok=True)
        bins = controlplane_build.ensure_built(quiet=True)
        started = time.monotonic()
        plane = ControlPlane.start(binaries=bins, detached=detach)
        say(f"control plane   {plane.server}  ({time.monotonic() - started:.1f} s)")
        try:
            aws = LocalAws.start(log_path=workdir / "local-aws.log", detach=detach)
            say(f"local AWS       {aws.endpoint_url}  queue {aws.queue_url.rsplit('/', 1)[-1]}")
            try:
                aws.owner_namespace = namespace  # the instances belong to the routes' namespace
                plane.ensure_crds()
                plane.create_namespace(namespace)
            except BaseException:
                aws.stop()
                raise
        except BaseException:
            plane.stop()
            raise
        return cls(control_plane=plane, local_aws=aws, namespace=namespace, workdir=workdir)

    def stop(self, *, remove_workdir: bool = False) -> None:
        """Stop local AWS and the control plane; never raises."""
        with contextlib.suppress(Exception):
            self.local_aws.stop()
        with contextlib.suppress(Exception):
            self.control_plane.stop()
        if remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
