"""The one stack builder: the whole local stack in one object, for `make demo`, the benchmarks and the tests.

Why one builder: the demo, the benchmarks and every test tier must exercise the same path a user runs,
not hand-assembled variants. A stack is a namespace with the CRDs, `count` real `config-service`
processes on 127.0.0.(10+i) registered in Cloud Map, one ConfigRoute, and the operator as it ships
(`config-refresh-operator --standalone`, devstack.stack.operator). `Stack.deploy()` puts the route, the
instances' registration and the operator onto a control plane, a local AWS stack and a fleet it is
given (the pytest plugin devstack.fixtures.stack gives it the session's), through the deploy step every
stack shares (devstack.stack.deploy; the benchmarks use that step directly for thousands of fake
endpoints across as many routes, devstack.services.endpoints); either the instances are registered in
Cloud Map directly, or (`pod_sync=True`) one Pod object per instance is created, Ready with the
instance's address as podIP (devstack.stack.pods), and podSync registers them.

`Stack.start()` (the demo and the whole-path benchmarks) first brings up the parts too
(devstack.stack.parts: the control plane, built once and cached, and the local AWS stack with the
change emitter), the fleet all listening on one refresh port (as a pod template's container port
would), then deploys with podSync. It returns once podSync has put every instance in Cloud Map as
HEALTHY and the route is Ready; `stop()` stops everything it started.

`detach=True` (for `demo-up`) starts every process in its own session and without parent watches, so
the stack outlives this Python process; `describe()` gives what `stop_described()` needs to stop it
again from another process (devstack.stack.detached).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import grpc

from devstack.aws.events import new_event_id, parameter_change_event
from devstack.aws.local_aws import LocalAws
from devstack.controlplane.plane import ControlPlane
from devstack.services.fleet import SERVER_NAME, ServiceFleet
from devstack.stack import kube
from devstack.stack.deploy import deploy
from devstack.stack.detached import describe, stop_described
from devstack.stack.operator import OperatorProcess, StackError, operator_environment
from devstack.stack.parts import Parts, Say, port_free_on_every, quiet
from devstack.stack.pods import APP_LABEL, create_ready_pods
from refresh_operator.podsync.model import instance_id_for

ROUTE_NAME = "config-service"

__all__ = [
    "APP_LABEL",
    "ROUTE_NAME",
    "SECURITIES",
    "Security",
    "Stack",
    "StackError",
    "deploy",
    "port_free_on_every",
    "secured_refresh",
    "stop_described",
]


Security = Literal["plaintext", "tls-token"]
SECURITIES: tuple[Security, ...] = get_args(Security)
SECURITY_NAMES: dict[Security, str] = {
    "plaintext": "plaintext, no token: loopback only",
    "tls-token": "TLS + bearer token",
}


def secured_refresh(fleet: ServiceFleet) -> dict[str, Any]:
    """A route's `spec.refresh` TLS and auth for `fleet`: its CA and token when it has them, else none."""
    credentials = fleet.credentials
    refresh: dict[str, Any] = {}
    if credentials.ca_file is not None:
        ca_bundle = base64.b64encode(credentials.ca_file.read_bytes()).decode()
        refresh["tls"] = {"enabled": True, "serverName": SERVER_NAME, "caBundle": ca_bundle}
    if credentials.token_file is not None:
        refresh["auth"] = {"type": "bearerToken"}
    return refresh


def secured_operator_env(fleet: ServiceFleet) -> dict[str, str]:
    """The operator's token file for `fleet` (the token its instances accept), when it has one."""
    token_file = fleet.credentials.token_file
    return {} if token_file is None else {"CONFIG_REFRESH_TOKEN_FILE": str(token_file)}


class Stack:
    """A namespace with one ConfigRoute, a fleet of config-service processes and the operator."""

    def __init__(
        self,
        *,
        control_plane: ControlPlane,
        local_aws: LocalAws,
        namespace: str,
        fleet: ServiceFleet,
        route: str,
        operator: OperatorProcess,
        workdir: Path | None = None,
    ) -> None:
        self.control_plane = control_plane
        self.local_aws = local_aws
        self.namespace = namespace
        self.fleet = fleet
        self.route = route
        self.operator = operator
        self.workdir = workdir
        self.ssm = local_aws.client("ssm")
        self.sqs = local_aws.client("sqs")
        self.parts: Parts | None = None  # set by start(): stop() then stops the fleet and the parts

    # ----- building -------------------------------------------------------------------------------------

    @classmethod
    def deploy(
        cls,
        *,
        control_plane: ControlPlane,
        local_aws: LocalAws,
        namespace: str,
        fleet: ServiceFleet,
        route: dict[str, Any],
        operator: OperatorProcess,
        pod_sync: bool = False,
        workdir: Path | None = None,
    ) -> Stack:
        """Register the fleet (directly in Cloud Map, or as Ready pods podSync registers), apply `route`,
        start `operator` (not yet started) and wait until the route is Ready (and, with podSync, every
        instance HEALTHY in Cloud Map): devstack.stack.deploy, then the wait. The namespace must exist,
        with the CRDs."""
        (name,) = deploy(
            control_plane=control_plane,
            local_aws=local_aws,
            namespace=namespace,
            instances=() if pod_sync else fleet,
            routes=[route],
            operator=operator,
        )
        stack = cls(
            control_plane=control_plane,
            local_aws=local_aws,
            namespace=namespace,
            fleet=fleet,
            route=name,
            operator=operator,
            workdir=workdir,
        )
        if pod_sync:
            stack.create_pods()
            stack.wait_synced(len(fleet))
        else:
            kube.wait_route_ready(control_plane, namespace, name)
        return stack

    @classmethod
    def start(
        cls,
        *,
        instances: int,
        workdir: Path | None = None,
        namespace: str = "demo",
        detach: bool = False,
        service_args: Sequence[str] = (),
        operator_env: dict[str, str] | None = None,
        security: Security = "tls-token",
        say: Say = quiet,
    ) -> Stack:
        """Bring the whole stack up (see the module docstring); on any failure, stop what was started.

        `security`: "tls-token" (the default), as the charts deploy it: every instance serves its refresh
        port with TLS (a certificate from the fleet's own CA, named config-service.local) and accepts only
        the fleet's bearer token, and the route trusts that CA (`tls.caBundle`, `serverName`) and sends the
        operator's token file (`auth: bearerToken`); or "plaintext", the explicit loopback opt-out (no TLS,
        no token), for a comparison."""
        if security not in SECURITIES:
            raise StackError(f"security must be one of {', '.join(SECURITIES)}, not {security!r}")
        if instances < 1:
            raise StackError("instances must be at least 1")
        workdir = workdir or Path(tempfile.mkdtemp(prefix="config-refresh-demo-"))
        try:
            parts = Parts.start(namespace=namespace, workdir=workdir, detach=detach, say=say)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        fleet: ServiceFleet | None = None
        operator: OperatorProcess | None = None
        try:
            aws = parts.local_aws
            started = time.monotonic()
            secured = security == "tls-token"
            fleet = ServiceFleet(
                instances,
                local_aws=aws,
                workdir=workdir / "fleet",
                extra_args=service_args,
                auth="token" if secured else "insecure",
                tls=secured,
            )
            promised = {p for i in fleet for p in (i.config_port, i.metrics_port)}
            port = port_free_on_every([instance.host for instance in fleet], taken=promised)
            for instance in fleet:
                # One container port on every "pod", as a pod template has (ServiceFleet has no option).
                instance.refresh_port = port
                instance._env["CONFIG_SERVICE_REFRESH_PORT"] = str(port)
            fleet.start()
            fleet.wait_serving(max(120.0, 3.0 * instances))
            say(
                f"config-service  {instances} processes on {fleet[0].host}..{fleet[-1].host}, refresh port"
                f" {port} ({SECURITY_NAMES[security]})  ({time.monotonic() - started:.1f} s)"
            )
            env = operator_environment(
                parts.control_plane,
                aws,
                {"CONFIG_REFRESH_POD_SYNC": "true", **secured_operator_env(fleet), **(operator_env or {})},
                namespace=namespace,
            )
            operator = OperatorProcess(namespace=namespace, env=env, log_path=workdir / "operator.log")
            started = time.monotonic()
            stack = cls.deploy(
                control_plane=parts.control_plane,
                local_aws=aws,
                namespace=namespace,
                fleet=fleet,
                route=kube.route_object(
                    ROUTE_NAME,
                    local_aws=aws,
                    port=port,
                    pod_sync_labels={"app": APP_LABEL},
                    **secured_refresh(fleet),
                ),
                operator=operator,
                pod_sync=True,
                workdir=workdir,
            )
            stack.parts = parts
            say(
                f"operator        pid {operator.pid}; podSync registered {instances} Ready pods in"
                f" Cloud Map ({time.monotonic() - started:.1f} s)"
            )
            return stack
        except BaseException:
            with contextlib.suppress(Exception):
                if operator is not None:
                    operator.stop(grace=5.0)
            with contextlib.suppress(Exception):
                if fleet is not None:
                    fleet.close()
            parts.stop(remove_workdir=True)
            raise

    @property
    def security(self) -> Security | None:
        """The fleet's refresh security as `start()` names it, read off its credentials; None for a fleet
        built another way (mutual TLS, ServiceAccount tokens, a token without TLS)."""
        credentials = self.fleet.credentials
        if credentials.mode == "token" and credentials.ca_file is not None:
            return "tls-token"
        if credentials.mode == "insecure" and credentials.ca_file is None:
            return "plaintext"
        return None

    def security_name(self) -> str:
        """How the operator's Refresh calls reach the fleet, in the words the reports use."""
        security = self.security
        return SECURITY_NAMES[security] if security is not None else f"auth {self.fleet.credentials.mode}"

    def create_pods(self) -> None:
        """One Ready Pod per instance, named after it, at its host (devstack.stack.pods)."""
        create_ready_pods(self.control_plane, self.namespace, self.fleet)

    def healthy_in_cloud_map(self) -> set[str]:
        """Instance ids Cloud Map returns for a HEALTHY discovery of the route's service."""
        found = self.local_aws.client("servicediscovery").discover_instances(
            NamespaceName=self.local_aws.namespace_name,
            ServiceName=self.local_aws.service_name,
            HealthStatus="HEALTHY",
            MaxResults=1000,
        )
        return {item["InstanceId"] for item in found["Instances"]}

    def wait_synced(self, count: int, timeout: float = 120.0) -> None:
        """Until podSync has every instance HEALTHY in Cloud Map and the route reports Ready and counts them
        (its INSTANCES column, `status.registered`)."""
        # podSync names each pod's instance <namespace>.<pod> (the pods here are named after instances)
        wanted = {instance_id_for(self.namespace, instance.instance_id) for instance in self.fleet}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.operator.is_running():
                raise StackError(f"the operator exited:\n{self.operator.log_tail(60)}")
            if (
                wanted <= self.healthy_in_cloud_map()
                and self.route_ready()
                and self.route_counts() == (len(wanted), len(wanted))
            ):
                return
            time.sleep(0.2)
        raise StackError(
            f"podSync did not register all {count} pods within {timeout:.0f} s "
            f"(healthy: {len(self.healthy_in_cloud_map())}):\n{self.operator.log_tail(60)}"
        )

    def route_counts(self) -> tuple[int | None, int | None]:
        """The route's (status.registered, status.healthy) as podSync last wrote them."""
        obj = kube.get_json(self.control_plane, "configroute", self.route, "-n", self.namespace)
        status = obj.get("status") or {}
        return (status.get("registered"), status.get("healthy"))

    def route_ready(self) -> bool:
        return kube.route_ready(self.control_plane, self.namespace, self.route)

    def set_refresh(self, **refresh: Any) -> None:
        """Change the route's spec.refresh and wait until the operator has indexed the new generation."""
        obj = kube.route_object(self.route, local_aws=self.local_aws, **refresh)
        kube.apply(self.control_plane, self.namespace, obj)

        def indexed() -> bool:
            current = kube.get_json(self.control_plane, "configroute", self.route, "-n", self.namespace)
            return bool(
                (current.get("status") or {}).get("observedGeneration") == current["metadata"]["generation"]
            )

        kube.wait_for(indexed, timeout=30, what="the route's new generation indexed")

    # ----- using ------------------------------------------------------------------------------------

    wait_for = staticmethod(kube.wait_for)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """kubectl in the stack's namespace with the admin kubeconfig."""
        return self.control_plane.kubectl("-n", self.namespace, *args, input=input, check=check)

    def kubectl_get(self) -> str:
        return str(self.control_plane.kubectl("get", "configrefresh", "-n", self.namespace).stdout)

    def client_env(self) -> dict[str, str]:
        """What configctl, kubectl and AWS SDKs need to use this stack (KUBECONFIG, endpoint, keys)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.local_aws.env())
        env["KUBECONFIG"] = str(self.control_plane.kubeconfig)
        return env

    def put(self, name: str, value: str, *, kind: str = "String") -> int:
        """PutParameter (overwrite); returns the new version."""
        answer = self.ssm.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)
        return int(answer["Version"])

    def refreshes(self) -> list[dict[str, Any]]:
        """Every ConfigRefresh in the namespace."""
        return kube.refreshes(self.control_plane, self.namespace)

    def refreshes_of(self, parameter: str) -> list[dict[str, Any]]:
        return kube.refreshes_of(self.control_plane, self.namespace, parameter)

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

        found: dict[str, Any] = kube.wait_for(
            done, timeout=timeout, what=f"{parameter} v{version} in {phases}"
        )
        return found

    def values(self, name: str) -> list[tuple[str, int]]:
        """(value, version) of `name` on every instance ('<missing>', 0 when an instance does not have it)."""
        seen = []
        for instance in self.fleet:
            try:
                entry = instance.get_config(name)
                seen.append((entry.value, int(entry.version)))
            except grpc.RpcError:
                seen.append(("<missing>", 0))
        return seen

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
        url = f"http://127.0.0.1:{self.operator.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        for line in text.splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
        return 0.0

    def events_for(self, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = kube.get_json(
            self.control_plane,
            "events",
            "-n",
            self.namespace,
            "--field-selector",
            f"involvedObject.name={name}",
        )["items"]
        return items

    # ----- stopping ---------------------------------------------------------------------------------

    def stop_operator(self) -> None:
        """Stop the operator (SIGTERM, SIGKILL after 5 s)."""
        self.operator.stop(grace=5.0)

    def stop(self) -> None:
        """Stop the operator and, for a stack from `start()`, everything else it started; never raises."""
        with contextlib.suppress(Exception):
            self.stop_operator()
        if self.parts is None:
            return
        with contextlib.suppress(Exception):
            self.fleet.close()
        self.parts.stop(remove_workdir=True)

    def describe(self) -> dict[str, Any]:
        """What another process needs to use or stop this stack (the demo-up state file)."""
        return describe(self)
