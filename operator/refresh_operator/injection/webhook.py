"""kopf registration of the injection webhook: ``register(registry, settings)`` from the composition root.

- An index of ConfigRoutes (namespace, name) -> the route's body, so an admission request is answered
  from memory (no API call inside the API server's webhook timeout).
- ``@kopf.on.mutate`` on pods (CREATE): a pod without the ``configrefresh.io/inject`` annotation gets
  no patch; one with it gets the sidecar or a refusal naming the fix.
- The WebhookServer: HTTPS with the chart's certificate (files re-read on rotation). The
  MutatingWebhookConfiguration is the chart's (``settings.admission.managed`` stays None), so the operator
  needs no cluster-wide write permission on admission configuration.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

from refresh_operator.injection.patch import InjectionRefused, apply_in_place, inject, request_from_pod
from refresh_operator.injection.template import SidecarTemplate, load_template
from refresh_operator.settings import OperatorSettings

logger = logging.getLogger("refresh_operator.injection")

ROUTES = ("configrefresh.io", "v1alpha1", "configroutes")
HANDLER_ID = "inject"
"""The webhook's URL path is ``/<HANDLER_ID>`` (kopf routes a request to the handler of that id)."""


def webhook_server(settings: OperatorSettings) -> kopf.WebhookServer:
    return kopf.WebhookServer(
        addr=settings.injection_address,
        port=settings.injection_port,
        certfile=str(settings.injection_cert_file) if settings.injection_cert_file else None,
        pkeyfile=str(settings.injection_key_file) if settings.injection_key_file else None,
        file_check_interval=30.0,
    )


def register(
    registry: kopf.OperatorRegistry,
    settings: OperatorSettings,
    template: SidecarTemplate | None = None,
) -> None:
    """Register the webhook on ``registry``; a no-op unless ``settings.injection_enabled``."""
    if not settings.injection_enabled:
        return
    if template is None:
        if settings.injection_template_file is None:
            raise ValueError("injection enabled without a sidecar template file")
        template = load_template(settings.injection_template_file)
    sidecar = template
    server_settings = settings

    @kopf.on.startup(registry=registry, id="injection-server")
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.admission.server = webhook_server(server_settings)
        settings.admission.managed = None  # the chart renders the MutatingWebhookConfiguration

    @kopf.index(*ROUTES, registry=registry, id="injection_routes")
    def injection_routes(namespace: str | None, name: str | None, spec: kopf.Spec, **_: Any) -> Any:
        body = {"metadata": {"namespace": namespace, "name": name}, "spec": dict(spec)}
        return {(namespace or "", name or ""): body}

    @kopf.on.mutate("pods", registry=registry, id=HANDLER_ID, operations=["CREATE"], side_effects=False)
    def inject_pod(body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
        index: kopf.Index[tuple[str, str], dict[str, Any]] = kwargs["injection_routes"]
        pod = dict(body)
        namespace = str((pod.get("metadata") or {}).get("namespace") or "")
        try:
            request = request_from_pod(pod)
            if request is None:
                return  # no annotation: never touched, no patch
            routes = list(index.get((namespace, request.route), ()))
            injected = inject(pod, routes[-1] if routes else None, sidecar)
        except InjectionRefused as error:
            logger.info("refused injection into a pod of %s: %s", namespace, error)
            raise kopf.AdmissionError(f"configrefresh.io sidecar injection: {error}", code=400) from None
        if injected is not None:
            patch.fns.append(lambda target: apply_in_place(cast(dict[str, Any], target), injected))
