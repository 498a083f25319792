"""The local AWS stack as a Python object: start the moto process, provision, steer it, stop it.

`LocalAws.start()` launches `python -m devstack.aws.local_aws serve` (devstack.aws.server) as a child
process on 127.0.0.1 with a free port, waits for its ready line, and provisions the queue, DLQ, rule and
Cloud Map resources (devstack.aws.provision). The object then hands out boto3 clients configured for
the endpoint, resets state between tests, reads request counts and arms faults over the small control
API the server adds (devstack.aws.control), and registers Cloud Map instances for tests.

The pytest fixtures (devstack.fixtures.aws), the `hack/local-aws` command (devstack.aws.cli) and
`hack/demo.py` are thin layers over this class.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3
from botocore.config import Config

from devstack.aws.provision import Provisioned, provision

DEFAULT_PREFIX = "/config-service/"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - moto accepts any key; never a real one
HOST = "127.0.0.1"
_HACK_DIR = Path(__file__).resolve().parents[2]


class LocalAwsError(RuntimeError):
    """The local AWS stack could not start, or its control API refused a request."""


def client_config() -> Config:
    """botocore settings for the local endpoint.

    inject_host_prefix=False: Cloud Map's DiscoverInstances would otherwise go to `data-127.0.0.1`.
    The read timeout leaves room for a 20 s SQS long poll.
    """
    return Config(
        region_name=REGION,
        inject_host_prefix=False,
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=50,
    )


class LocalAws:
    """A running local AWS endpoint with the project's resources provisioned in it."""

    region: str = REGION
    account_id: str = ACCOUNT_ID

    def __init__(
        self,
        *,
        endpoint_url: str,
        prefix: str = DEFAULT_PREFIX,
        max_receive_count: int = 3,
        visibility_timeout: int = 30,
        process: subprocess.Popen[bytes] | None = None,
        pid: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.prefix = prefix
        self.max_receive_count = max_receive_count
        self.visibility_timeout = visibility_timeout
        self.log_path = log_path
        self.pid = pid if pid is not None else (process.pid if process is not None else None)
        self._process = process
        self._session = boto3.session.Session(
            aws_access_key_id=FAKE_ACCESS_KEY_ID,
            aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
            region_name=REGION,
        )
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._resources: Provisioned | None = None
        self.owner_namespace: str | None = None
        """When set, `register_instance` marks instances as owned by this Kubernetes namespace
        (attribute `k8s-namespace`, as podSync and config-service's self-registration do)."""

    # ----- life cycle -------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        prefix: str = DEFAULT_PREFIX,
        max_receive_count: int = 3,
        visibility_timeout: int = 30,
        *,
        port: int = 0,
        log_path: Path | None = None,
        startup_timeout: float = 60.0,
        detach: bool = False,
        verbose: bool = False,
        host: str = HOST,
    ) -> LocalAws:
        """Start the moto process, wait until it serves, provision; raises LocalAwsError on failure.

        detach=True starts it in its own session and without the parent watch, for `hack/local-aws
        up`; otherwise it stops when this process exits (atexit) or dies (the server's parent watch).
        `host` is 127.0.0.1 unless pods must reach it (the one-node cluster's bridge address).
        """
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="local-aws-", suffix=".log")
            os.close(handle)
            log_path = Path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "devstack.aws.local_aws",
            "serve",
            "--host",
            host,
            "--port",
            str(port),
        ]
        if not detach:
            command += ["--parent-pid", str(os.getpid())]
        if verbose:
            command.append("--verbose")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_HACK_DIR), env.get("PYTHONPATH", "")) if p)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=detach,
            )
        try:
            ready = _read_ready_line(process, startup_timeout, log_path)
            stack = cls(
                endpoint_url=f"http://{ready['host']}:{ready['port']}",
                prefix=prefix,
                max_receive_count=max_receive_count,
                visibility_timeout=visibility_timeout,
                process=process,
                log_path=log_path,
            )
            if not detach:
                atexit.register(stack.stop)
            stack._provision()
            stack.reset_call_counts()
        except BaseException:
            _terminate(process)
            raise
        return stack

    @classmethod
    def attach(
        cls,
        endpoint_url: str,
        prefix: str = DEFAULT_PREFIX,
        max_receive_count: int = 3,
        visibility_timeout: int = 30,
        *,
        pid: int | None = None,
    ) -> LocalAws:
        """Use a stack someone else started (e.g. `hack/local-aws up`); provisioning is idempotent."""
        stack = cls(
            endpoint_url=endpoint_url,
            prefix=prefix,
            max_receive_count=max_receive_count,
            visibility_timeout=visibility_timeout,
            pid=pid,
        )
        stack.health()
        stack._provision()
        return stack

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> LocalAws:
        """The stack a `describe()` dict names (e.g. the `hack/local-aws` state file), without a call."""
        log_path = description.get("log_path")
        stack = cls(
            endpoint_url=description["endpoint_url"],
            prefix=description["prefix"],
            max_receive_count=description["max_receive_count"],
            visibility_timeout=description["visibility_timeout"],
            pid=description.get("pid"),
            log_path=Path(log_path) if log_path else None,
        )
        stack._resources = Provisioned(**description["resources"])
        return stack

    def stop(self) -> None:
        """Stop the moto process if this object started it; safe to call twice."""
        if self._process is not None:
            _terminate(self._process)
            self._process = None
        elif self.pid is not None:
            _terminate_pid(self.pid)
        self.pid = None

    def is_running(self) -> bool:
        try:
            self.health()
        except LocalAwsError:
            return False
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ----- state ------------------------------------------------------------------------------------

    def reset(
        self,
        *,
        prefix: str | None = None,
        max_receive_count: int | None = None,
        visibility_timeout: int | None = None,
    ) -> None:
        """Wipe all moto state, counters and faults, then provision again (optionally with new settings)."""
        if prefix is not None:
            self.prefix = prefix
        if max_receive_count is not None:
            self.max_receive_count = max_receive_count
        if visibility_timeout is not None:
            self.visibility_timeout = visibility_timeout
        self._control("POST", "reset")
        self._provision()
        self.reset_call_counts()

    def _provision(self) -> None:
        self._resources = provision(
            self.client,
            prefix=self.prefix,
            max_receive_count=self.max_receive_count,
            visibility_timeout=self.visibility_timeout,
        )

    @property
    def resources(self) -> Provisioned:
        if self._resources is None:
            raise LocalAwsError("the local AWS stack has not been provisioned")
        return self._resources

    @property
    def queue_url(self) -> str:
        return self.resources.queue_url

    @property
    def queue_arn(self) -> str:
        return self.resources.queue_arn

    @property
    def dlq_url(self) -> str:
        return self.resources.dlq_url

    @property
    def dlq_arn(self) -> str:
        return self.resources.dlq_arn

    @property
    def rule_name(self) -> str:
        return self.resources.rule_name

    @property
    def rule_arn(self) -> str:
        return self.resources.rule_arn

    @property
    def namespace_name(self) -> str:
        return self.resources.namespace_name

    @property
    def namespace_id(self) -> str:
        return self.resources.namespace_id

    @property
    def service_name(self) -> str:
        return self.resources.service_name

    @property
    def service_id(self) -> str:
        return self.resources.service_id

    # ----- clients ----------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A boto3 client for the local endpoint (fake credentials, us-east-1, standard retries)."""
        with self._clients_lock:
            existing = self._clients.get(service)
            if existing is None:
                existing = self._session.client(
                    service, endpoint_url=self.endpoint_url, config=client_config()
                )
                self._clients[service] = existing
            return existing

    def receive_events(
        self,
        *,
        wait_seconds: int = 5,
        max_messages: int = 10,
        queue_url: str | None = None,
        delete: bool = True,
    ) -> list[dict[str, Any]]:
        """One long poll of the event queue (or `queue_url`): the decoded event bodies, deleted by default."""
        url = queue_url or self.queue_url
        sqs = self.client("sqs")
        messages = sqs.receive_message(
            QueueUrl=url, WaitTimeSeconds=wait_seconds, MaxNumberOfMessages=max_messages
        ).get("Messages", [])
        if delete:
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(message["Body"]) for message in messages]

    def env(self) -> dict[str, str]:
        """Environment variables that point AWS SDKs and the project's components at this stack."""
        resources = self.resources
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
            "AWS_DISABLE_HOST_PREFIX_INJECTION": "true",
            "CONFIG_REFRESH_PARAMETER_PREFIX": self.prefix,
            "CONFIG_REFRESH_QUEUE_URL": resources.queue_url,
            "CONFIG_REFRESH_DLQ_URL": resources.dlq_url,
            "CONFIG_REFRESH_RULE_NAME": resources.rule_name,
            "CONFIG_REFRESH_CLOUDMAP_NAMESPACE": resources.namespace_name,
            "CONFIG_REFRESH_CLOUDMAP_NAMESPACE_ID": resources.namespace_id,
            "CONFIG_REFRESH_CLOUDMAP_SERVICE": resources.service_name,
            "CONFIG_REFRESH_CLOUDMAP_SERVICE_ID": resources.service_id,
        }

    def describe(self) -> dict[str, Any]:
        """Everything needed to attach to this stack again (the `hack/local-aws` state file)."""
        return {
            "endpoint_url": self.endpoint_url,
            "pid": self.pid,
            "log_path": str(self.log_path) if self.log_path else None,
            "prefix": self.prefix,
            "max_receive_count": self.max_receive_count,
            "visibility_timeout": self.visibility_timeout,
            "resources": {f.name: getattr(self.resources, f.name) for f in fields(Provisioned)},
        }

    # ----- counting and faults ----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "health")
        return result

    def call_counts(self) -> dict[str, int]:
        """Requests that reached the endpoint since the last reset, keyed "ssm:GetParameter" etc."""
        counts: dict[str, int] = self._control("GET", "counts")
        return counts

    def reset_call_counts(self) -> None:
        self._control("DELETE", "counts")

    def inject_fault(
        self,
        action: str = "ssm:GetParameter",
        error: str = "ThrottlingException",
        count: int = 1,
        *,
        status: int | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `count` calls of `action` with `error` instead of calling moto.

        botocore's standard retry mode retries throttling and 5xx errors, so one boto3 call can use up
        to three of them.
        """
        self._control(
            "POST",
            "faults",
            {"action": action, "error": error, "count": count, "status": status, "message": message},
        )

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def pending_faults(self) -> list[dict[str, Any]]:
        faults: list[dict[str, Any]] = self._control("GET", "faults")["faults"]
        return faults

    # ----- Cloud Map --------------------------------------------------------------------------------

    def register_instance(
        self,
        instance_id: str,
        ip: str,
        port: int,
        attributes: dict[str, str] | None = None,
        healthy: bool = True,
    ) -> None:
        """Register (or re-register) an instance in the provisioned service, as the operator does."""
        merged = {"AWS_INSTANCE_IPV4": ip, "AWS_INSTANCE_PORT": str(port), **(attributes or {})}
        if self.owner_namespace is not None:
            merged.setdefault("k8s-namespace", self.owner_namespace)
        if not healthy:
            merged["AWS_INIT_HEALTH_STATUS"] = "UNHEALTHY"
        self.client("servicediscovery").register_instance(
            ServiceId=self.service_id, InstanceId=instance_id, Attributes=merged
        )

    def set_health(self, instance_id: str, healthy: bool) -> None:
        self.client("servicediscovery").update_instance_custom_health_status(
            ServiceId=self.service_id,
            InstanceId=instance_id,
            Status="HEALTHY" if healthy else "UNHEALTHY",
        )

    def deregister_instance(self, instance_id: str) -> None:
        self.client("servicediscovery").deregister_instance(ServiceId=self.service_id, InstanceId=instance_id)

    # ----- control API ------------------------------------------------------------------------------

    def _control(self, method: str, route: str, payload: dict[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(  # noqa: S310 - always our own http://127.0.0.1 endpoint
            f"{self.endpoint_url}/_devstack/{route}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise LocalAwsError(f"{method} /_devstack/{route}: {exc.code} {exc.read().decode()}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise LocalAwsError(f"local AWS at {self.endpoint_url} is not answering: {exc}") from exc


def _read_ready_line(process: subprocess.Popen[bytes], timeout: float, log_path: Path) -> dict[str, Any]:
    """The server's `{"host", "port", "pid"}` line, or LocalAwsError with the log's tail."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LocalAwsError(f"moto server not ready after {timeout:.0f} s{_log_tail(log_path)}")
            if selector.select(timeout=min(remaining, 0.5)):
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    process.wait(timeout=5)
                    raise LocalAwsError(
                        f"moto server exited with code {process.returncode} before it was ready"
                        f"{_log_tail(log_path)}"
                    )
                buffer += chunk
    process.stdout.close()
    ready: dict[str, Any] = json.loads(buffer.split(b"\n", 1)[0])
    return ready


def _log_tail(log_path: Path, lines: int = 30) -> str:
    try:
        text = log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- {log_path} (last {len(text)} lines) ---\n" + "\n".join(text)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stdout is not None and not process.stdout.closed:
        process.stdout.close()


def _terminate_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM a server we did not start ourselves (state file), then SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """`python -m devstack.aws.local_aws serve ...`: the server process itself."""
    parser = argparse.ArgumentParser(prog="python -m devstack.aws.local_aws")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the moto server process (used by LocalAws)")
    serve_parser.add_argument("--host", default=HOST)
    serve_parser.add_argument("--port", type=int, default=0)
    serve_parser.add_argument("--parent-pid", type=int, default=None)
    serve_parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    from devstack.aws.server import serve

    serve(host=args.host, port=args.port, parent_pid=args.parent_pid, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
