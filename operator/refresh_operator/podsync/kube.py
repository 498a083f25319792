"""The Kubernetes calls podSync makes outside kopf's watches: list pods, apply route status.

The reconcile lists pods from the API server rather than trusting what the watch has delivered so far,
so an operator that just started never mistakes "not seen yet" for "gone" and deregisters live pods.
Responses are read as plain dicts, the same shape kopf hands to handlers, so ``model`` sees one shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Protocol

from kubernetes_asyncio import client, config

from refresh_operator.podsync.model import FIELD_MANAGER

GROUP = "configrefresh.io"
VERSION = "v1alpha1"
PLURAL = "configroutes"


class Kube(Protocol):
    """The Kubernetes access podSync's controller needs."""

    async def list_pods(self, namespace: str, match_labels: Mapping[str, str]) -> list[dict[str, Any]]: ...

    async def apply_route_status(self, namespace: str, name: str, body: Mapping[str, Any]) -> None: ...


class KubeClient:
    """``Kube`` over kubernetes_asyncio, authenticated in-cluster or from KUBECONFIG."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        # Typed as Any: the generated stubs lack the raw-response and content-type keywords used here.
        self._core: Any = client.CoreV1Api(api)
        self._custom: Any = client.CustomObjectsApi(api)

    @classmethod
    async def connect(cls) -> KubeClient:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            load_incluster: Any = config.load_incluster_config
            load_incluster(client_configuration=configuration)
            return cls(client.ApiClient(configuration))
        return cls(await config.new_client_from_config(persist_config=False))

    async def close(self) -> None:
        await self._api.close()

    async def list_pods(self, namespace: str, match_labels: Mapping[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
        pods: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"label_selector": selector, "limit": 500, "_preload_content": False}
            if token:
                kwargs["_continue"] = token
            response = await self._core.list_namespaced_pod(namespace, **kwargs)
            page = json.loads(await response.read())
            pods.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return pods

    async def apply_route_status(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        await self._custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            dict(body),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
