"""Pods without a kubelet: one Pod object per instance, made Running and Ready at the instance's address.

There is no kubelet in the local control plane, so nothing would ever run a pod or give it an IP. For
podSync to register an instance, the stack creates a Pod named after it and patches its status as the
kubelet would: Running, Ready, podIP = the instance's host.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from devstack.controlplane.plane import ControlPlane
from devstack.stack.deploy import Registrable

APP_LABEL = "config-service"


def ready_pod(instance_id: str, host: str) -> tuple[Any, dict[str, Any]]:
    """A Pod object named after an instance, and the status that makes it Running and Ready at `host`."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": instance_id, "labels": {"app": APP_LABEL}},
        "spec": {"nodeName": "local", "containers": [{"name": "app", "image": "config-service:local"}]},
    }
    status = {
        "status": {
            "phase": "Running",
            "podIP": host,
            "podIPs": [{"ip": host}],
            # what kubectl's READY column counts (the Ready condition is what podSync reads)
            "containerStatuses": [
                {
                    "name": "app",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "image": "config-service:local",
                    "imageID": "",
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                }
            ],
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        }
    }
    return pod, status


def create_ready_pods(control_plane: ControlPlane, namespace: str, instances: Iterable[Registrable]) -> None:
    """One Pod per instance (name = instance id), then its status: Running, Ready, podIP = its host."""
    from kubernetes import client

    with control_plane.api_client() as api_client:
        core = client.CoreV1Api(api_client)
        for instance in instances:
            pod, status = ready_pod(instance.instance_id, instance.host)
            core.create_namespaced_pod(namespace, pod)
            core.patch_namespaced_pod_status(instance.instance_id, namespace, status)
