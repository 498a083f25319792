"""Kubernetes access through the user's kubeconfig: read ConfigRoutes and ConfigRefreshes, create one.

configctl is a short-lived CLI, so it uses the synchronous kubernetes client. Every API failure becomes
a ConfigctlError with exit code KUBE_ERROR and a message saying what was attempted.
"""

from __future__ import annotations

from typing import Any

from configctl.exitcodes import ConfigctlError, ExitCode
from configctl.settings import ConfigctlSettings
from configrefresh_api.groupversion import GROUP, REFRESHES, ROUTES, VERSION
from configrefresh_api.matching import route_scope

REQUEST_TIMEOUT = 15


def _kube_error(what: str, exc: BaseException) -> ConfigctlError:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    detail = f"HTTP {status} {reason or ''}".strip() if status is not None else f"{type(exc).__name__}: {exc}"
    return ConfigctlError(f"Kubernetes: {what} failed: {detail}", exit_code=ExitCode.KUBE_ERROR)


class Kube:
    """The few API calls configctl makes, in one namespace."""

    def __init__(self, settings: ConfigctlSettings) -> None:
        from kubernetes import client as kube_client
        from kubernetes import config as kube_config

        # The kubernetes package is only partly typed: treat it as Any rather than trust half the stubs.
        client: Any = kube_client
        config: Any = kube_config
        try:
            api_client = config.new_client_from_config(
                config_file=settings.kubeconfig, context=settings.context
            )
            namespace = settings.namespace
            if namespace is None:
                _, active = config.list_kube_config_contexts(config_file=settings.kubeconfig)
                if settings.context is not None:
                    contexts, _ = config.list_kube_config_contexts(config_file=settings.kubeconfig)
                    active = next((c for c in contexts if c.get("name") == settings.context), active)
                namespace = (active or {}).get("context", {}).get("namespace") or "default"
        except (config.ConfigException, OSError) as exc:
            raise ConfigctlError(
                f"cannot load kubeconfig ({settings.kubeconfig or 'KUBECONFIG or ~/.kube/config'}): {exc}",
                exit_code=ExitCode.KUBE_ERROR,
            ) from None
        self.namespace: str = namespace
        self._api: Any = client.CustomObjectsApi(api_client)

    def list_refreshes(self, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        try:
            response = self._api.list_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                REFRESHES,
                label_selector=label_selector or "",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except Exception as exc:
            raise _kube_error(f"list {REFRESHES} in {self.namespace}", exc) from None
        items: list[dict[str, Any]] = response.get("items", [])
        return items

    def list_routes(self) -> list[dict[str, Any]]:
        try:
            response = self._api.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, ROUTES, _request_timeout=REQUEST_TIMEOUT
            )
        except Exception as exc:
            raise _kube_error(f"list {ROUTES} in {self.namespace}", exc) from None
        items: list[dict[str, Any]] = response.get("items", [])
        return items

    def get_route(self, name: str) -> dict[str, Any] | None:
        return self._get(ROUTES, name)

    def annotate_route(self, name: str, annotations: dict[str, str]) -> None:
        """Merge-patch annotations onto one ConfigRoute (404 → NOT_FOUND)."""
        self._annotate(ROUTES, "ConfigRoute", name, annotations)

    def annotate_refresh(self, name: str, annotations: dict[str, str]) -> None:
        """Merge-patch annotations onto one ConfigRefresh (404 → NOT_FOUND)."""
        self._annotate(REFRESHES, "ConfigRefresh", name, annotations)

    def get_refresh(self, name: str) -> dict[str, Any] | None:
        return self._get(REFRESHES, name)

    def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        """One object of ours by name; None when it does not exist."""
        try:
            found: dict[str, Any] = self._api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
            )
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise _kube_error(f"get {plural}/{name}", exc) from None
        return found

    def _annotate(self, plural: str, kind: str, name: str, annotations: dict[str, str]) -> None:
        try:
            self._api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                plural,
                name,
                {"metadata": {"annotations": annotations}},
                _request_timeout=REQUEST_TIMEOUT,
            )
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                raise ConfigctlError(
                    f"{kind} {name} not found in {self.namespace}", exit_code=ExitCode.NOT_FOUND
                ) from None
            raise _kube_error(f"patch {plural}/{name}", exc) from None

    def create_refresh(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            created: dict[str, Any] = self._api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, REFRESHES, body, _request_timeout=REQUEST_TIMEOUT
            )
        except Exception as exc:
            raise _kube_error(f"create {REFRESHES}", exc) from None
        return created


def routes_for(routes: list[dict[str, Any]], parameter_name: str) -> list[tuple[str, dict[str, str]]]:
    """(route name, scope) of every route that claims the parameter, sorted by name (the operator's rule:
    `configrefresh_api.matching.route_scope`)."""
    matched = []
    for route in routes:
        scope = route_scope(route, parameter_name)
        if scope is not None:
            matched.append((str(route["metadata"]["name"]), scope))
    return sorted(matched)
