"""Run a Deployment's pod from rendered chart output as a podman container, the way a kubelet would.

What the kubelet would take from the pod spec is taken from the rendered Deployment here, never from a
second hand-written copy: the user and groups, the read-only root filesystem, no-new-privileges, the
capabilities, the seccomp profile, the command and arguments, the environment (values, field references,
Secret and ConfigMap references), the memory and CPU limits, every volume mount (emptyDir as tmpfs with
its size limit, Secret and ConfigMap volumes from the rendered objects or else from the cluster,
projected ServiceAccount tokens issued through the TokenRequest API with the rendered audience and
lifetime), the automounted API credentials (token, CA, namespace, KUBERNETES_SERVICE_HOST/PORT), the
probes (`probe()` answers them as the kubelet would ask) and the termination grace period (`stop()`).
A volume type or field this module does not know makes it fail, so a chart change cannot slip past.

What differs from a cluster, because there is no cluster network: containers share the host's network
(`--network host`) so they reach the local stack on 127.0.0.1. Each pod gets a loopback address of its
own as its pod IP, and "0.0.0.0" in the rendered environment and arguments becomes that address (on a
pod network 0.0.0.0 is the pod's own interface; on the host it would be every pod's). The image is the
locally built one. Anything else a caller overrides is passed as `env_overrides` and named by the caller.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

PODMAN = ["podman", "--runtime", "runc"]  # Debian's crun refuses these hosts' hybrid cgroups
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# A token for (audience or None for the API server's own, expiration seconds).
TokenIssuer = Callable[[str | None, int], str]
# An object from the cluster (kind, name) when the rendered output does not hold it.
ClusterLookup = Callable[[str, str], dict[str, Any] | None]


class PodSpecError(RuntimeError):
    """The rendered pod spec uses something this harness cannot reproduce (so the test cannot be true)."""


def load_manifests(text: str) -> list[dict[str, Any]]:
    """Every object of a `helm template` / `helm get manifest` stream."""
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict) and doc.get("kind")]


def find(objects: Sequence[Mapping[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of `kind` (and `name`); fails when there is none or more than one."""
    found = [
        dict(o) for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    if len(found) != 1:
        raise PodSpecError(f"expected one {kind} {name or ''} in the rendered output, found {len(found)}")
    return found[0]


def _quantity_bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|K|M|G)?", str(text))
    if match is None:
        raise PodSpecError(f"memory quantity {text!r} not understood")
    units = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(match.group(1)) * units[match.group(2)]


def _cpus(text: str) -> str:
    text = str(text)
    return str(int(text[:-1]) / 1000) if text.endswith("m") else text


def _decoded(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """The data of a Secret or ConfigMap as bytes per key."""
    out: dict[str, bytes] = {}
    if obj["kind"] == "Secret":
        out.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        out.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
    else:
        out.update({k: str(v).encode() for k, v in (obj.get("data") or {}).items()})
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


@dataclass
class RenderedPod:
    """One pod of a rendered Deployment, run as one podman container (the pod's single container)."""

    deployment: dict[str, Any]
    objects: list[dict[str, Any]]
    namespace: str
    pod_name: str
    pod_ip: str
    image: str
    workdir: Path
    issue_token: TokenIssuer
    api_server: tuple[str, int]
    api_ca: Path
    cluster_lookup: ClusterLookup = field(default=lambda kind, name: None)
    env_overrides: dict[str, str] = field(default_factory=dict)
    container_name: str = field(default_factory=lambda: f"cr-e2e-{uuid.uuid4().hex[:10]}")
    started_at: float | None = None

    # ----- the rendered spec -------------------------------------------------------------------------

    @property
    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod_spec["containers"]
        if len(containers) != 1 or self.pod_spec.get("initContainers"):
            raise PodSpecError("the harness runs pods of exactly one container and no init containers")
        container: dict[str, Any] = containers[0]
        return container

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.deployment["spec"]["template"]["metadata"].get("labels") or {}
        return labels

    @property
    def grace_seconds(self) -> int:
        return int(self.pod_spec.get("terminationGracePeriodSeconds", 30))

    def port(self, name_or_number: str | int) -> int:
        """A container port by its name (as probes name them) or number."""
        if isinstance(name_or_number, int):
            return name_or_number
        for port in self.container.get("ports") or []:
            if port.get("name") == name_or_number:
                return int(port["containerPort"])
        raise PodSpecError(f"no container port named {name_or_number!r}")

    def _security(self) -> dict[str, Any]:
        merged = dict(self.pod_spec.get("securityContext") or {})
        for key in ("fsGroup", "supplementalGroups", "fsGroupChangePolicy", "sysctls"):
            merged.pop(key, None)
        merged.update(self.container.get("securityContext") or {})
        return merged

    def _object(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        found = self.cluster_lookup(kind, name)
        if found is None:
            raise PodSpecError(f"{kind} {name} is neither in the rendered output nor in the cluster")
        return found

    def _address(self, text: str) -> str:
        return text.replace("0.0.0.0", self.pod_ip)

    # ----- environment -------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.pod_spec.get("automountServiceAccountToken", True):
            env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"] = (
                self.api_server[0],
                str(self.api_server[1]),
            )
        for source in self.container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                if key in source:
                    data = _decoded(self._object(kind, source[key]["name"]))
                    env.update({prefix + k: v.decode() for k, v in data.items()})
        field_values = {
            "metadata.name": self.pod_name,
            "metadata.namespace": self.namespace,
            "status.podIP": self.pod_ip,
            "spec.serviceAccountName": self.pod_spec.get("serviceAccountName", "default"),
            "spec.nodeName": "node-e2e",
        }
        for item in self.container.get("env") or []:
            name = item["name"]
            if "value" in item:
                env[name] = self._address(str(item["value"]))
                continue
            source = item.get("valueFrom") or {}
            if "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                if path not in field_values:
                    raise PodSpecError(f"env {name}: fieldRef {path} not supported")
                env[name] = field_values[path]
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind, ref = (
                    ("Secret", source["secretKeyRef"])
                    if "secretKeyRef" in source
                    else ("ConfigMap", source["configMapKeyRef"])
                )
                env[name] = _decoded(self._object(kind, ref["name"]))[ref["key"]].decode()
            else:
                raise PodSpecError(f"env {name}: valueFrom {sorted(source)} not supported")
        env.update(self.env_overrides)
        return env

    # ----- volumes -----------------------------------------------------------------------------------

    def _write_files(self, directory: Path, files: Mapping[str, bytes], mode: int) -> None:
        """Files as the kubelet writes a Secret/ConfigMap/projected volume: group fsGroup, given mode."""
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        group = (self.pod_spec.get("securityContext") or {}).get("fsGroup")
        for relative, data in files.items():
            path = directory / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            if group is not None:
                os.chown(path, -1, int(group))
            path.chmod(mode)

    def _items(
        self, data: Mapping[str, bytes], items: Sequence[Mapping[str, Any]] | None
    ) -> dict[str, bytes]:
        if not items:
            return dict(data)
        return {item["path"]: data[item["key"]] for item in items}

    def _volume_files(self, volume: Mapping[str, Any]) -> tuple[dict[str, bytes], int] | None:
        """(files, mode) of a file-backed volume; None for an emptyDir."""
        if "emptyDir" in volume:
            return None
        if "secret" in volume or "configMap" in volume:
            kind, source = (
                ("Secret", volume["secret"]) if "secret" in volume else ("ConfigMap", volume["configMap"])
            )
            name = source.get("secretName") or source.get("name")
            data = _decoded(self._object(kind, str(name)))
            return self._items(data, source.get("items")), int(source.get("defaultMode", 0o644))
        if "projected" in volume:
            files: dict[str, bytes] = {}
            for item in volume["projected"].get("sources") or []:
                if "serviceAccountToken" in item:
                    token = item["serviceAccountToken"]
                    files[token["path"]] = self.issue_token(
                        token.get("audience"), int(token.get("expirationSeconds", 3600))
                    ).encode()
                elif "secret" in item or "configMap" in item:
                    kind, ref = (
                        ("Secret", item["secret"]) if "secret" in item else ("ConfigMap", item["configMap"])
                    )
                    files.update(self._items(_decoded(self._object(kind, ref["name"])), ref.get("items")))
                else:
                    raise PodSpecError(f"projected source {sorted(item)} not supported")
            return files, int(volume["projected"].get("defaultMode", 0o644))
        raise PodSpecError(f"volume {volume['name']}: type {sorted(volume)} not supported")

    def _mount_args(self) -> list[str]:
        volumes = {v["name"]: v for v in self.pod_spec.get("volumes") or []}
        args: list[str] = []
        for mount in self.container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            if mount.get("subPath"):
                raise PodSpecError(f"volumeMount {mount['name']}: subPath not supported")
            written = self._volume_files(volume)
            if written is None:
                empty = volume["emptyDir"] or {}
                size = _quantity_bytes(empty["sizeLimit"]) if empty.get("sizeLimit") else None
                options = f"type=tmpfs,destination={mount['mountPath']},tmpfs-mode=1777"
                args += ["--mount", options + (f",tmpfs-size={size}" if size else "")]
                continue
            files, mode = written
            directory = self.workdir / self.container_name / mount["name"]
            self._write_files(directory, files, mode)
            # Secret, ConfigMap and projected volumes are read-only whatever the mount says.
            args += ["--volume", f"{directory}:{mount['mountPath']}:ro"]
        if self.pod_spec.get("automountServiceAccountToken", True):
            directory = self.workdir / self.container_name / "kube-api-access"
            self._write_files(
                directory,
                {
                    "token": self.issue_token(None, 3607).encode(),
                    "ca.crt": self.api_ca.read_bytes(),
                    "namespace": self.namespace.encode(),
                },
                0o644,
            )
            args += ["--volume", f"{directory}:{SERVICE_ACCOUNT_DIR}:ro"]
        return args

    # ----- security ----------------------------------------------------------------------------------

    def _security_args(self) -> list[str]:
        sc = self._security()
        pod_sc = self.pod_spec.get("securityContext") or {}
        args: list[str] = []
        if sc.get("privileged"):
            raise PodSpecError("privileged containers are not reproduced")
        user = sc.get("runAsUser")
        if user is not None:
            args += ["--user", f"{user}:{sc['runAsGroup']}" if "runAsGroup" in sc else str(user)]
        if sc.get("runAsNonRoot"):
            effective = user if user is not None else self._image_user()
            if str(effective).split(":")[0] in ("", "0", "root"):
                raise PodSpecError(f"runAsNonRoot, but the container would run as {effective!r}")
        for group in [pod_sc.get("fsGroup"), *(pod_sc.get("supplementalGroups") or [])]:
            if group is not None:
                args += ["--group-add", str(group)]
        if sc.get("readOnlyRootFilesystem"):
            # podman would add tmpfs on /tmp, /var/tmp and /run: only the pod's volumes are writable.
            args += ["--read-only", "--read-only-tmpfs=false"]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        capabilities = sc.get("capabilities") or {}
        args += [a for cap in capabilities.get("drop") or [] for a in ("--cap-drop", cap)]
        args += [a for cap in capabilities.get("add") or [] for a in ("--cap-add", cap)]
        seccomp = (sc.get("seccompProfile") or {}).get("type", "RuntimeDefault")
        if seccomp == "Unconfined":
            args += ["--security-opt", "seccomp=unconfined"]
        elif seccomp != "RuntimeDefault":
            raise PodSpecError(f"seccompProfile {seccomp} not supported")
        return args

    def _image_user(self) -> str:
        out = subprocess.run(
            [*PODMAN, "image", "inspect", "--format", "{{.Config.User}}", self.image],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def _resource_args(self) -> list[str]:
        limits = (self.container.get("resources") or {}).get("limits") or {}
        args: list[str] = []
        if "memory" in limits:
            args += ["--memory", str(_quantity_bytes(limits["memory"]))]
        if "cpu" in limits:
            args += ["--cpus", _cpus(limits["cpu"])]
        return args

    # ----- running -----------------------------------------------------------------------------------

    def run_args(self) -> list[str]:
        """The whole `podman run` command line."""
        container = self.container
        args = [
            *PODMAN,
            "run",
            "--detach",
            "--name",
            self.container_name,
            "--hostname",
            self.pod_name,
            "--network",
            "host",
            "--pull",
            "never",
            "--no-healthcheck",  # the kubelet ignores HEALTHCHECK: the rendered probes are what counts
            *self._security_args(),
            *self._resource_args(),
            *self._mount_args(),
        ]
        for name, value in self.environment().items():
            args += ["--env", f"{name}={value}"]
        if container.get("workingDir"):
            args += ["--workdir", container["workingDir"]]
        if container.get("command"):
            args += ["--entrypoint", json.dumps([self._address(c) for c in container["command"]])]
        args.append(self.image)
        args += [self._address(str(a)) for a in container.get("args") or []]
        return args

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = self.run_args()
        self.started_at = time.monotonic()
        subprocess.run(argv, check=True, capture_output=True, text=True)

    def state(self) -> dict[str, Any]:
        out = subprocess.run(
            [*PODMAN, "inspect", "--format", "{{json .State}}", self.container_name],
            check=True,
            capture_output=True,
            text=True,
        )
        state: dict[str, Any] = json.loads(out.stdout)
        return state

    def exec(self, *argv: str) -> str:
        """Run a command in the running container (as its user); its stdout."""
        out = subprocess.run(
            [*PODMAN, "exec", self.container_name, *argv], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise AssertionError(f"podman exec {argv} failed ({out.returncode}): {out.stderr[-2000:]}")
        return out.stdout

    def logs(self) -> str:
        out = subprocess.run(
            [*PODMAN, "logs", self.container_name], capture_output=True, text=True, check=False
        )
        return out.stdout + out.stderr

    def stop(self) -> tuple[int, float]:
        """SIGTERM, then SIGKILL after the pod's termination grace period (as the kubelet does).

        Returns (exit code, seconds from SIGTERM to exit)."""
        started = time.monotonic()
        subprocess.run(
            [*PODMAN, "stop", "--time", str(self.grace_seconds), self.container_name],
            check=True,
            capture_output=True,
            text=True,
        )
        return int(self.state()["ExitCode"]), time.monotonic() - started

    def remove(self) -> None:
        subprocess.run(
            [*PODMAN, "rm", "--force", "--time", "0", self.container_name],
            capture_output=True,
            check=False,
        )

    # ----- probes ------------------------------------------------------------------------------------

    def probe(self, kind: str, timeout: float = 3.0) -> bool:
        """Ask the rendered readinessProbe/livenessProbe once, as the kubelet would (at the pod IP)."""
        spec = self.container.get(kind)
        if spec is None:
            raise PodSpecError(f"the container has no {kind}")
        if "httpGet" in spec:
            get = spec["httpGet"]
            scheme = get.get("scheme", "HTTP").lower()
            url = f"{scheme}://{self.pod_ip}:{self.port(get['port'])}{get.get('path', '/')}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (http to the pod)
                    return 200 <= int(answer.status) < 400
            except (urllib.error.URLError, OSError):
                return False
        if "grpc" in spec:
            target = f"{self.pod_ip}:{self.port(int(spec['grpc']['port']))}"
            with grpc.insecure_channel(target) as channel:
                try:
                    answer = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=spec["grpc"].get("service", "")),
                        timeout=timeout,
                    )
                except grpc.RpcError:
                    return False
                return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
        if "tcpSocket" in spec:
            import socket

            try:
                with socket.create_connection(
                    (self.pod_ip, self.port(spec["tcpSocket"]["port"])), timeout=timeout
                ):
                    return True
            except OSError:
                return False
        raise PodSpecError(f"{kind}: handler {sorted(spec)} not supported")

    def wait_probe(self, kind: str, timeout: float) -> float:
        """Seconds from `start()` until the probe first succeeds; fails with the container's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.probe(kind):
                return time.monotonic() - (self.started_at or 0.0)
            if not self.state().get("Running", False):
                raise AssertionError(f"{self.pod_name} exited:\n{self.logs()[-4000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{self.pod_name}: {kind} not answered in {timeout} s:\n{self.logs()[-4000:]}")
