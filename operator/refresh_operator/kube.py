"""The operator's own Kubernetes API calls (outside kopf's): create ConfigRefresh, patch status, list, delete.

kopf applies a handler's patch only once, after the handler returns; a rollout needs live progress and
the consumer creates objects outside any handler. These calls use the synchronous official client and
always run on the `Blocking` thread pool, never on the event loop. Credentials come from KUBECONFIG or
the in-cluster ServiceAccount, as kopf's own login does.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import kubernetes

GROUP = "configrefresh.io"
VERSION = "v1alpha1"
REFRESHES = "configrefreshes"
ROUTES = "configroutes"
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = (5, 15)


class KubeError(RuntimeError):
    """A Kubernetes API call failed; `status` is the HTTP status (0 when the server was unreachable)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def _wrap(operation: str, error: Exception) -> KubeError:
    if isinstance(error, kubernetes.client.ApiException):
        return KubeError(f"{operation}: HTTP {error.status} {error.reason}", status=int(error.status or 0))
    return KubeError(f"{operation}: {type(error).__name__}: {error}", status=0)


class Kube:
    """Thin, blocking wrapper around CustomObjectsApi for the two kinds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._api: Any = None

    def _custom(self) -> Any:
        with self._lock:
            if self._api is None:
                try:
                    kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
                except kubernetes.config.ConfigException:
                    kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
                self._api = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient())
            return self._api

    def create_refresh(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create a ConfigRefresh; True if created, False if it already existed (a duplicate)."""
        try:
            self._custom().create_namespaced_custom_object(
                GROUP, VERSION, namespace, REFRESHES, dict(body), _request_timeout=REQUEST_TIMEOUT
            )
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                return False
            raise _wrap("create ConfigRefresh", error) from None
        except Exception as error:
            raise _wrap("create ConfigRefresh", error) from None
        return True

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._custom().get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise _wrap(f"get {plural}", error) from None
        except Exception as error:
            raise _wrap(f"get {plural}", error) from None
        return result

    def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        try:
            self._custom().patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"status": dict(status)},
                _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except Exception as error:
            raise _wrap(f"patch {plural}/status", error) from None

    def patch(self, plural: str, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        try:
            self._custom().patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                dict(body),
                _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except Exception as error:
            raise _wrap(f"patch {plural}", error) from None

    def list(
        self, plural: str, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        extra: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
        try:
            api = self._custom()
            if namespace is None:
                result = api.list_cluster_custom_object(
                    GROUP, VERSION, plural, _request_timeout=REQUEST_TIMEOUT, **extra
                )
            else:
                result = api.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, _request_timeout=REQUEST_TIMEOUT, **extra
                )
        except Exception as error:
            raise _wrap(f"list {plural}", error) from None
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    def delete(self, plural: str, namespace: str, name: str) -> None:
        try:
            self._custom().delete_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
            )
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise _wrap(f"delete {plural}", error) from None
        except Exception as error:
            raise _wrap(f"delete {plural}", error) from None
