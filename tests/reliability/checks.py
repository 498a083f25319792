"""What every reliability test checks, on top of the stack (devstack.fixtures.stack's `make_stack`):

- `VersionWatch`: a thread polling GetState on every instance during the test, so "no instance ever goes
  back a version" is checked on every observation, not only at the end (the `version_watch` fixture in
  conftest.py starts and stops them);
- `assert_converged`: every committed change on every healthy instance (compared with Parameter Store);
- `leaked_in`: the places a SecureString value must never appear (logs, objects, Events, metrics).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc

from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.services.fleet import Instance
from devstack.stack.kube import get_json

FINISHED = {"Succeeded", "PartiallyFailed", "Failed", "Superseded"}


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


def wait_finished(stack_: Any, name: str, version: int, timeout: float = 120.0) -> dict[str, Any]:
    found: dict[str, Any] = stack_.wait_phase(name, version, FINISHED, timeout=timeout)
    return found


def elapsed(started: float) -> float:
    return time.monotonic() - started
