"""The operator's own Kubernetes API calls (outside kopf's): create ConfigRefresh, patch status, list, delete.

kopf applies a handler's patch only once, after the handler returns; a rollout needs live progress and
the consumer creates objects outside any handler. These calls use the synchronous official client and
always run on the `Blocking` thread pool, never on the event loop. Credentials come from KUBECONFIG or
the in-cluster ServiceAccount, as kopf's own login does.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import kubernetes
import kubernetes.watch

from configrefresh_api.groupversion import GROUP, VERSION
from configrefresh_api.groupversion import REFRESHES as REFRESHES
from configrefresh_api.groupversion import ROUTES as ROUTES
from refresh_operator.leadership import PEERING_GROUP, PEERING_VERSION, Peering

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
REQUEST_TIMEOUT = (5, 15)
LIST_PAGE_SIZE = 100


class KubeError(RuntimeError):
    """A Kubernetes API call failed; `status` is the HTTP status (0 when the server was unreachable)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def _wrap(operation: str, error: Exception) -> KubeError:
    if isinstance(error, kubernetes.client.ApiException):
        return KubeError(f"{operation}: HTTP {error.status} {error.reason}", status=int(error.status or 0))
    return KubeError(f"{operation}: {type(error).__name__}: {error}", status=0)


def _discard(response: Any) -> None:
    """Read and drop a reply the caller has no use for, and give its connection back to the pool.

    A patch answers with the whole patched object; a ConfigRefresh of a 1,000-instance rollout carries
    `status.instances`, and parsing it into Python objects (the client's default) held the interpreter
    lock, in a pool thread, while the event loop was fanning out (issue 20's scale-row profile)."""
    response.read()
    response.release_conn()


def _summary(obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status")
    if isinstance(status, dict) and "instances" in status:
        obj["status"] = {key: value for key, value in status.items() if key != "instances"}
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    return obj


class Kube:
    """Thin, blocking wrapper around CustomObjectsApi for the two kinds."""

    def __init__(self, *, pool: int = 16) -> None:
        """`pool`: connections kept to the API server; as many as threads that call at once (the
        client's default is 5 per CPU, and a connection beyond it is closed after each call: a new TLS
        handshake for every call once more threads than that are busy)."""
        self._lock = threading.Lock()
        self._api: Any = None
        self._pool = pool

    def _custom(self) -> Any:
        with self._lock:
            if self._api is None:
                try:
                    kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
                except kubernetes.config.ConfigException:
                    kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
                configuration = kubernetes.client.Configuration.get_default_copy()
                configuration.connection_pool_maxsize = self._pool
                self._api = kubernetes.client.CustomObjectsApi(kubernetes.client.ApiClient(configuration))
            return self._api

    def request_token(
        self, namespace: str, service_account: str, *, audience: str, expiration_seconds: int
    ) -> tuple[str, float]:
        """TokenRequest for `service_account` with one audience: (token, expiry as epoch seconds)."""
        body = kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(
                audiences=[audience], expiration_seconds=expiration_seconds
            )
        )
        try:
            core = kubernetes.client.CoreV1Api(self._custom().api_client)
            answer = core.create_namespaced_service_account_token(
                service_account, namespace, body, _request_timeout=REQUEST_TIMEOUT
            )
        except Exception as error:
            raise _wrap("create serviceaccounts/token", error) from None
        issued = answer.status
        if issued is None or not issued.token or issued.expiration_timestamp is None:
            raise KubeError("create serviceaccounts/token: the answer holds no token", status=0)
        return str(issued.token), float(issued.expiration_timestamp.timestamp())

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

    def get_peering(self, peering: Peering) -> dict[str, Any] | None:
        """The kopf peering object (KopfPeering, or ClusterKopfPeering cluster-wide); None if absent."""
        if peering.name is None:
            return None
        api = self._custom()
        try:
            if peering.cluster_scoped or peering.namespace is None:
                result: dict[str, Any] = api.get_cluster_custom_object(
                    PEERING_GROUP,
                    PEERING_VERSION,
                    peering.plural,
                    peering.name,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            else:
                result = api.get_namespaced_custom_object(
                    PEERING_GROUP,
                    PEERING_VERSION,
                    peering.namespace,
                    peering.plural,
                    peering.name,
                    _request_timeout=REQUEST_TIMEOUT,
                )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise _wrap(f"get {peering.plural}", error) from None
        except Exception as error:
            raise _wrap(f"get {peering.plural}", error) from None
        return result

    def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        body = {"status": dict(status)}
        self._patch_status(f"patch {plural}/status", plural, namespace, name, body, _content_type=MERGE_PATCH)

    def apply_status(
        self, plural: str, namespace: str, name: str, body: Mapping[str, Any], *, field_manager: str
    ) -> None:
        """Server-side apply of `body` (apiVersion, kind, metadata, status) to the object's status, owning
        (and forcing) the fields it holds as `field_manager`."""
        self._patch_status(
            f"apply {plural}/status",
            plural,
            namespace,
            name,
            dict(body),
            _content_type=APPLY_PATCH,
            field_manager=field_manager,
            force=True,
        )

    def _patch_status(
        self, operation: str, plural: str, namespace: str, name: str, body: dict[str, Any], **options: Any
    ) -> None:
        try:
            reply = self._custom().patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                body,
                _request_timeout=REQUEST_TIMEOUT,
                _preload_content=False,
                **options,
            )
            _discard(reply)
        except Exception as error:
            raise _wrap(operation, error) from None

    def patch(self, plural: str, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        try:
            reply = self._custom().patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                dict(body),
                _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
                _preload_content=False,
            )
            _discard(reply)
        except Exception as error:
            raise _wrap(f"patch {plural}", error) from None

    def list(
        self,
        plural: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> builtins.list[dict[str, Any]]:
        """Every object, fetched `page_size` at a time, each without `status.instances` and managedFields.

        Retention, resync and the Halted look-up read phases, versions and conditions, never per-instance
        results; a ConfigRefresh of a 1,000-instance fleet carries ~100 KiB of them, so a whole-namespace
        list held hundreds of megabytes at once. Paging bounds that to one page; dropping the instances keeps
        what is returned small."""
        objects: builtins.list[dict[str, Any]] = []
        token: str | None = None
        while True:
            items, token = self.list_page(
                plural, namespace, label_selector=label_selector, limit=page_size, continue_token=token
            )
            objects.extend(_summary(item) for item in items)
            if token is None:
                return objects

    def list_page(
        self,
        plural: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """One page of a list (all of it without `limit`); the token for the next page, None at the end.

        A token the API server has expired (HTTP 410) is a KubeError like any other: start over."""
        extra: dict[str, Any] = {}
        if label_selector:
            extra["label_selector"] = label_selector
        if limit is not None:
            extra["limit"] = limit
        if continue_token:
            extra["_continue"] = continue_token
        result = self._list_call(plural, namespace, _request_timeout=REQUEST_TIMEOUT, **extra)
        items: builtins.list[dict[str, Any]] = result.get("items", [])
        token = (result.get("metadata") or {}).get("continue") or None
        return items, token

    def _list_call(self, plural: str, namespace: str | None, **kwargs: Any) -> Any:
        """The list call of `plural` in `namespace` (None: every namespace), with the client's kwargs."""
        try:
            api = self._custom()
            if namespace is None:
                return api.list_cluster_custom_object(GROUP, VERSION, plural, **kwargs)
            return api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, **kwargs)
        except Exception as error:
            raise _wrap(f"list {plural}", error) from None

    def list_at(self, plural: str, namespace: str | None) -> tuple[builtins.list[dict[str, Any]], str]:
        """Every object in one unpaged list (for small kinds: ConfigRoutes) and the list's
        resourceVersion, where a watch of the changes after it starts."""
        result = self._list_call(plural, namespace, _request_timeout=REQUEST_TIMEOUT)
        items: builtins.list[dict[str, Any]] = result.get("items", [])
        return items, str((result.get("metadata") or {}).get("resourceVersion") or "")

    def watch(
        self, plural: str, namespace: str | None, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The changes after `resource_version` for at most `timeout_seconds`, as (`ADDED`|`MODIFIED`|
        `DELETED`, object). Raises KubeError when the server ends the watch with an error (status 410:
        the version is too old, list again)."""
        stream = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        api = self._custom()
        call, args = (
            (api.list_cluster_custom_object, (GROUP, VERSION, plural))
            if namespace is None
            else (api.list_namespaced_custom_object, (GROUP, VERSION, namespace, plural))
        )
        try:
            for event in stream.stream(  # type: ignore[no-untyped-call]
                call,
                *args,
                resource_version=resource_version,
                timeout_seconds=timeout_seconds,
                allow_watch_bookmarks=True,
                _request_timeout=(REQUEST_TIMEOUT[0], timeout_seconds + REQUEST_TIMEOUT[1]),
            ):
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    yield str(event["type"]), dict(event["object"])
        except Exception as error:
            raise _wrap(f"watch {plural}", error) from None
        finally:
            stream.stop()  # type: ignore[no-untyped-call]

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

    def list_pods(
        self, namespace: str, *, label_selector: str, page_size: int = 500
    ) -> builtins.list[dict[str, Any]]:
        """Every pod the selector picks in `namespace`, as plain dicts (the shape kopf hands to handlers):
        read as JSON, not deserialised into the client's models."""
        # Typed as Any: the generated stubs do not know a raw (_preload_content=False) response.
        core: Any = kubernetes.client.CoreV1Api(self._custom().api_client)
        pods: builtins.list[dict[str, Any]] = []
        token: str | None = None
        while True:
            extra: dict[str, Any] = {"_continue": token} if token else {}
            try:
                response = core.list_namespaced_pod(
                    namespace,
                    label_selector=label_selector,
                    limit=page_size,
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT,
                    **extra,
                )
                page = json.loads(response.data)
            except Exception as error:
                raise _wrap("list pods", error) from None
            pods.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                return pods
