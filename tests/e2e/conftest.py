"""e2e fixtures for the operator: the operator as a real subprocess, routes, and waiting on rollouts.

The operator runs exactly as it ships: `config-refresh-operator --standalone --namespace NS`, with the
control plane's admin kubeconfig and the local AWS stack's endpoint in its environment, logging to a
file that is attached to a failing test's report. Tests kill (SIGKILL) and restart it to prove that
rollouts survive.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.stack.builder import OPERATOR_IMAGE_ENV

OPERATOR = [str(Path(sys.executable).parent / "config-refresh-operator")]
_LOGS_KEY = pytest.StashKey[list[Path]]()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class OperatorProcess:
    """One `config-refresh-operator` process watching one namespace; restartable with the same settings."""

    def __init__(self, *, namespace: str, env: dict[str, str], log_path: Path) -> None:
        self.namespace = namespace
        self.env = env
        self.log_path = log_path
        self.metrics_port = int(env["CONFIG_REFRESH_METRICS_PORT"])
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("operator already running")
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*OPERATOR, "--standalone", "--namespace", self.namespace],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until this run has indexed the routes and kopf watches (the consumer runs from then on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise AssertionError(f"operator exited early:\n{self.log_tail()}")
            if "ConfigRoute(s)" in self.log_text(since_start=True):
                return
            time.sleep(0.1)
        raise AssertionError(f"operator not ready after {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, signum: int) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def log_text(self, *, since_start: bool = False) -> str:
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return data[self._log_offset if since_start else 0 :].decode("utf-8", "replace")

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@pytest.fixture
def operator_env(control_plane: ControlPlane, local_aws: LocalAws, kube_namespace: str) -> dict[str, str]:
    """The operator's environment. As a cluster admin must, it grants the test's namespace the local
    stack's prefix (nothing else), and instances registered from here on belong to that namespace."""
    local_aws.owner_namespace = kube_namespace
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CONFIG_REFRESH_", "AWS_"))}
    env.update(local_aws.env())
    env.update(
        {
            "KUBECONFIG": str(control_plane.kubeconfig),
            "PYTHONUNBUFFERED": "1",
            **OPERATOR_IMAGE_ENV,
            "CONFIG_REFRESH_QUEUE_URL": local_aws.queue_url,
            "CONFIG_REFRESH_AWS_ENDPOINT_URL": local_aws.endpoint_url,
            "CONFIG_REFRESH_METRICS_ADDRESS": "127.0.0.1",
            "CONFIG_REFRESH_METRICS_PORT": str(free_port()),
            "CONFIG_REFRESH_ALLOWED_PREFIXES": json.dumps({kube_namespace: [local_aws.prefix]}),
        }
    )
    return env


@pytest.fixture
def operator_process(
    kube_namespace: str,
    operator_env: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., OperatorProcess]]:
    """Factory: start the operator on the test's namespace (extra env merged in); stopped at test end."""
    started: list[OperatorProcess] = []

    def launch(*, start: bool = True, **extra_env: str) -> OperatorProcess:
        log_path = tmp_path / f"operator-{len(started)}.log"
        request.node.stash.setdefault(_LOGS_KEY, []).append(log_path)
        process = OperatorProcess(
            namespace=kube_namespace, env={**operator_env, **extra_env}, log_path=log_path
        )
        started.append(process)
        if start:
            process.start()
            process.wait_ready()
        return process

    yield launch
    for process in started:
        process.kill()  # a clean stop waits out the 20 s long poll; the test is over, nothing to keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if isinstance(report, pytest.TestReport) and report.failed:
        for path in item.stash.get(_LOGS_KEY, []):
            if path.exists():
                tail = "\n".join(path.read_text(errors="replace").splitlines()[-120:])
                report.sections.append((f"operator log {path.name} (tail)", tail))
    return report


# ----- helpers the tests share ------------------------------------------------------------------------


def apply(control_plane: ControlPlane, namespace: str, obj: dict[str, Any]) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def route_object(name: str, *, local_aws: LocalAws, prefix: str, **refresh: Any) -> dict[str, Any]:
    return {
        "apiVersion": "configrefresh.io/v1alpha1",
        "kind": "ConfigRoute",
        "metadata": {"name": name},
        "spec": {
            "parameterPrefix": prefix,
            "discovery": {
                "cloudMap": {"namespace": local_aws.namespace_name, "service": local_aws.service_name}
            },
            "refresh": {"timeoutSeconds": 2, "maxAttempts": 3, "deadlineSeconds": 60, **refresh},
        },
    }


def get_json(control_plane: ControlPlane, *args: str) -> Any:
    return json.loads(control_plane.kubectl("get", *args, "-o", "json").stdout)


def refreshes(control_plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(control_plane, "configrefreshes", "-n", namespace)["items"]
    return items


def refreshes_of(control_plane: ControlPlane, namespace: str, parameter: str) -> list[dict[str, Any]]:
    return [
        item for item in refreshes(control_plane, namespace) if item["spec"]["parameter"]["name"] == parameter
    ]


T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 60.0, every: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy and return that; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def wait_route_ready(control_plane: ControlPlane, namespace: str, name: str, timeout: float = 60.0) -> None:
    def ready() -> bool:
        obj = get_json(control_plane, "configroute", name, "-n", namespace)
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait_for(ready, timeout=timeout, what=f"ConfigRoute {name} Ready")


class Stack:
    """A namespace with one ConfigRoute, `count` registered config-service instances and the operator."""

    def __init__(
        self,
        *,
        control_plane: ControlPlane,
        local_aws: LocalAws,
        namespace: str,
        fleet: Any,
        route: str,
        operator: OperatorProcess,
    ) -> None:
        self.control_plane = control_plane
        self.local_aws = local_aws
        self.namespace = namespace
        self.fleet = fleet
        self.route = route
        self.operator = operator
        self.ssm = local_aws.client("ssm")
        self.sqs = local_aws.client("sqs")

    def put(self, name: str, value: str, *, kind: str = "String") -> int:
        """PutParameter (overwrite); returns the new version."""
        answer = self.ssm.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)
        return int(answer["Version"])

    def refreshes_of(self, parameter: str) -> list[dict[str, Any]]:
        return refreshes_of(self.control_plane, self.namespace, parameter)

    def wait_phase(
        self, parameter: str, version: int | None, phases: set[str], timeout: float = 90.0
    ) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            for item in self.refreshes_of(parameter):
                spec_version = item["spec"]["parameter"].get("version")
                if version is not None and spec_version != version:
                    continue
                if (item.get("status") or {}).get("phase") in phases:
                    return item
            return None

        found: dict[str, Any] = wait_for(done, timeout=timeout, what=f"{parameter} v{version} in {phases}")
        return found

    def values(self, name: str) -> list[tuple[str, int]]:
        """(value, version) of `name` on every instance ('<missing>', 0 when an instance does not have it)."""
        import grpc

        seen = []
        for instance in self.fleet:
            try:
                entry = instance.get_config(name)
                seen.append((entry.value, int(entry.version)))
            except grpc.RpcError:
                seen.append(("<missing>", 0))
        return seen

    wait_for = staticmethod(wait_for)

    def queue_depth(self) -> tuple[int, int]:
        """(visible, in flight) messages on the change queue."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.local_aws.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def send_event(self, name: str, *, operation: str = "Update", event_id: str | None = None) -> str:
        """Send a Parameter Store Change envelope straight to the queue (as EventBridge would)."""
        import datetime

        from devstack.aws.events import new_event_id, parameter_change_event

        body = parameter_change_event(
            name=name,
            parameter_type="String",
            operation=operation,  # type: ignore[arg-type]
            account_id=self.local_aws.account_id,
            region=self.local_aws.region,
            event_id=event_id or new_event_id(),
            moment=datetime.datetime.now(datetime.UTC),
        )
        return self.send_raw(json.dumps(body))

    def send_raw(self, body: str) -> str:
        return str(self.sqs.send_message(QueueUrl=self.local_aws.queue_url, MessageBody=body)["MessageId"])

    def metric(self, sample: str) -> float:
        """The value of one Prometheus sample line (e.g. 'x_total{outcome="unrouted"}') or 0."""
        import urllib.request

        text = urllib.request.urlopen(
            f"http://127.0.0.1:{self.operator.metrics_port}/metrics", timeout=5
        ).read()
        for line in text.decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
        return 0.0

    def set_refresh(self, **refresh: Any) -> None:
        """Change the route's spec.refresh and wait until the operator has indexed the new generation."""
        obj = route_object(self.route, local_aws=self.local_aws, prefix=self.local_aws.prefix, **refresh)
        apply(self.control_plane, self.namespace, obj)

        def indexed() -> bool:
            current = get_json(self.control_plane, "configroute", self.route, "-n", self.namespace)
            return bool(
                (current.get("status") or {}).get("observedGeneration") == current["metadata"]["generation"]
            )

        wait_for(indexed, timeout=30, what="the route's new generation indexed")

    def events_for(self, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = get_json(
            self.control_plane,
            "events",
            "-n",
            self.namespace,
            "--field-selector",
            f"involvedObject.name={name}",
        )["items"]
        return items

    def kubectl_get(self) -> str:
        return str(self.control_plane.kubectl("get", "configrefresh", "-n", self.namespace).stdout)


@pytest.fixture
def stack(
    control_plane: ControlPlane,
    local_aws: LocalAws,
    kube_namespace: str,
    service_fleet: Callable[..., Any],
    operator_process: Callable[..., OperatorProcess],
) -> Stack:
    """Ten config-service instances on 127.0.0.x, each registered in Cloud Map; a route; the operator."""
    fleet = service_fleet(10, local_aws=local_aws)
    for instance in fleet:
        local_aws.register_instance(instance.instance_id, instance.host, instance.refresh_port)
    route = "services"
    apply(control_plane, kube_namespace, route_object(route, local_aws=local_aws, prefix=local_aws.prefix))
    operator = operator_process()
    wait_route_ready(control_plane, kube_namespace, route)
    return Stack(
        control_plane=control_plane,
        local_aws=local_aws,
        namespace=kube_namespace,
        fleet=fleet,
        route=route,
        operator=operator,
    )
