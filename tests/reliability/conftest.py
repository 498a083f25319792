"""Reliability suite fixtures: the e2e operator stack reused, plus the invariant every test checks.

The operator launcher, the `stack` fixture and the route helpers live in tests/e2e/conftest.py; they are
loaded from there (under a module name of their own, so both folders can run in one session) rather than
copied. On top of them this module adds what each fault test shares:

- `make_stack(count, ...)`: the e2e Stack at any size, with the route's refresh settings and the queue's
  visibility timeout chosen by the test;
- `VersionWatch`: a thread polling GetState on every instance during the test, so "no instance ever goes
  back a version" is checked on every observation, not only at the end;
- `assert_converged`: every committed change on every healthy instance (compared with Parameter Store);
- `leaked_in`: the places a SecureString value must never appear (logs, objects, Events, metrics).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.services.fleet import Instance


def _load_e2e_support() -> Any:
    path = Path(__file__).parent.parent / "e2e" / "conftest.py"
    spec = importlib.util.spec_from_file_location("reliability_e2e_support", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_e2e = _load_e2e_support()

# Fixtures and the failure-report hook of the e2e tier, registered for this folder too.
operator_env = _e2e.operator_env
operator_process = _e2e.operator_process
stack = _e2e.stack
pytest_runtest_makereport = _e2e.pytest_runtest_makereport

Stack = _e2e.Stack
OperatorProcess = _e2e.OperatorProcess
apply = _e2e.apply
route_object = _e2e.route_object
get_json = _e2e.get_json
refreshes = _e2e.refreshes
wait_for = _e2e.wait_for
wait_route_ready = _e2e.wait_route_ready

FINISHED = {"Succeeded", "PartiallyFailed", "Failed", "Superseded"}


# ----- building a stack of any size ---------------------------------------------------------------------


@pytest.fixture
def make_stack(
    control_plane: ControlPlane,
    local_aws: LocalAws,
    kube_namespace: str,
    service_fleet: Callable[..., Any],
    operator_process: Callable[..., Any],
) -> Callable[..., Any]:
    """Factory: `count` registered instances, one route `services` (refresh settings given), the operator."""

    def build(
        count: int = 10,
        *,
        visibility_timeout: int | None = None,
        max_receive_count: int | None = None,
        operator_env: dict[str, str] | None = None,
        fleet_timeout: float = 180.0,
        resync_seconds: int | None = None,
        tls: bool = False,
        **refresh: Any,
    ) -> Any:
        if visibility_timeout is not None or max_receive_count is not None:
            local_aws.reset(visibility_timeout=visibility_timeout, max_receive_count=max_receive_count)
        fleet = service_fleet(count, local_aws=local_aws, timeout=fleet_timeout, tls=tls)
        for instance in fleet:
            local_aws.register_instance(instance.instance_id, instance.host, instance.refresh_port)
        route = "services"
        if tls:  # the route trusts the fleet's CA (caBundle) and checks the name its certificates carry
            ca_bundle = base64.b64encode(fleet.credentials.ca_file.read_bytes()).decode()
            refresh["tls"] = {"enabled": True, "serverName": "config-service.local", "caBundle": ca_bundle}
        body = route_object(route, local_aws=local_aws, prefix=local_aws.prefix, **refresh)
        if resync_seconds is not None:
            body["spec"]["resync"] = {"intervalSeconds": resync_seconds}
        apply(control_plane, kube_namespace, body)
        operator = operator_process(**(operator_env or {}))
        wait_route_ready(control_plane, kube_namespace, route)
        return Stack(
            control_plane=control_plane,
            local_aws=local_aws,
            namespace=kube_namespace,
            fleet=fleet,
            route=route,
            operator=operator,
        )

    return build


# ----- no instance ever goes back a version -------------------------------------------------------------


class VersionWatch:
    """Polls GetState on instances in a thread; records every (last_modified, version) seen per name.

    An observation is a regression when a live entry is older (by LastModifiedDate, then version) than one
    seen before on the same instance: versions restart at 1 after a delete and re-create, so the version
    alone is not an order, the pair is. A deleted entry is recorded but is not compared.
    """

    def __init__(self, instances: Iterable[Instance], prefix: str, interval: float = 0.3) -> None:
        self.instances = list(instances)
        self.prefix = prefix
        self.interval = interval
        self.observations = 0
        self.regressions: list[str] = []
        self._latest: dict[tuple[str, str], tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="version-watch", daemon=True)

    def __enter__(self) -> VersionWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval)

    def poll_once(self) -> None:
        for instance in self.instances:
            try:
                state = instance.get_state(self.prefix, timeout=2)
            except grpc.RpcError:
                continue  # stopped, black-holed or restarting: nothing observed
            for parameter in state.parameters:
                self.observations += 1
                if parameter.deleted:
                    continue
                key = (instance.instance_id, parameter.name)
                seen = (parameter.last_modified.ToNanoseconds(), int(parameter.version))
                before = self._latest.get(key)
                if before is not None and seen < before:
                    self.regressions.append(f"{key}: {before} then {seen}")
                if before is None or seen > before:
                    self._latest[key] = seen

    def assert_monotonic(self) -> None:
        self.stop()
        self.poll_once()
        assert self.observations > 0, "the watch observed nothing"
        assert self.regressions == [], self.regressions[:20]


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


# ----- every committed change on every healthy instance -------------------------------------------------


def parameter_store_state(local_aws: LocalAws, names: Iterable[str]) -> dict[str, tuple[str, int] | None]:
    """Current (value, version) of each name in Parameter Store, None when it does not exist.

    Read with GetParameters so that faults a test injects on GetParameter are left for the operator.
    """
    ssm = local_aws.client("ssm")
    names = list(names)
    state: dict[str, tuple[str, int] | None] = dict.fromkeys(names)
    for start in range(0, len(names), 10):
        answer = ssm.get_parameters(Names=names[start : start + 10], WithDecryption=True)
        for parameter in answer["Parameters"]:
            state[parameter["Name"]] = (str(parameter["Value"]), int(parameter["Version"]))
    return state


def instance_state(instance: Instance, name: str) -> tuple[str, int] | None:
    """(value, version) an instance serves for `name`, None when it serves nothing (NOT_FOUND)."""
    try:
        entry = instance.get_config(name, timeout=5)
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.NOT_FOUND:
            return None
        raise
    return (str(entry.value), int(entry.version))


def divergence(local_aws: LocalAws, instances: Iterable[Instance], names: Iterable[str]) -> list[str]:
    names = list(names)
    truth = parameter_store_state(local_aws, names)
    wrong = []
    for instance in instances:
        for name in names:
            held = instance_state(instance, name)
            if held != truth[name]:
                wrong.append(f"{instance.instance_id} {name}: holds {_redacted(held)}, store {truth[name]}")
    return wrong


def _redacted(held: tuple[str, int] | None) -> str:
    return "nothing" if held is None else f"v{held[1]}"


def assert_converged(
    local_aws: LocalAws, instances: Iterable[Instance], names: Iterable[str], timeout: float = 90.0
) -> None:
    """Until every instance holds exactly Parameter Store's current value and version of every name."""
    instances, names = list(instances), list(names)
    deadline = time.monotonic() + timeout
    while True:
        wrong = divergence(local_aws, instances, names)
        if not wrong:
            return
        if time.monotonic() > deadline:
            names_behind = {entry.split(" ")[1].rstrip(":") for entry in wrong}
            raise AssertionError(
                f"{len(names_behind)} of {len(names)} names not converged ({len(wrong)} instance-name "
                f"pairs) on {len(instances)} instances after {timeout}s: " + "; ".join(wrong[:10])
            )
        time.sleep(0.5)


# ----- secrets ------------------------------------------------------------------------------------------


def scrape(url: str) -> str:
    if not url.startswith("http://127.0.0."):
        raise ValueError(f"only local metrics endpoints are scraped, not {url}")
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (checked just above)
        return str(answer.read().decode("utf-8", "replace"))


def leak_surfaces(stack_: Any, extra_logs: Iterable[Path] = ()) -> dict[str, str]:
    """Every text a SecureString value must be absent from: logs, objects, Events, metrics."""
    control_plane: ControlPlane = stack_.control_plane
    namespace: str = stack_.namespace
    surfaces = {
        "operator log": stack_.operator.log_text(),
        "operator metrics": scrape(f"http://127.0.0.1:{stack_.operator.metrics_port}/metrics"),
        "ConfigRefresh objects": json.dumps(get_json(control_plane, "configrefreshes", "-n", namespace)),
        "ConfigRoute objects": json.dumps(get_json(control_plane, "configroutes", "-n", namespace)),
        "Events": json.dumps(get_json(control_plane, "events", "-n", namespace)),
    }
    for instance in stack_.fleet:
        surfaces[f"{instance.instance_id} log"] = instance.log_text()
        if instance.is_running():
            surfaces[f"{instance.instance_id} metrics"] = instance.metrics_text()
    for path in extra_logs:
        surfaces[str(path)] = path.read_text(errors="replace") if path.exists() else ""
    return surfaces


def leaked_in(secret: str, surfaces: dict[str, str]) -> list[str]:
    return [where for where, text in surfaces.items() if secret in text]


# ----- small shared helpers -----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_kib(pid: int) -> int:
    """VmRSS of a process, KiB (from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def wait_finished(stack_: Any, name: str, version: int, timeout: float = 120.0) -> dict[str, Any]:
    found: dict[str, Any] = stack_.wait_phase(name, version, FINISHED, timeout=timeout)
    return found


def elapsed(started: float) -> float:
    return time.monotonic() - started
