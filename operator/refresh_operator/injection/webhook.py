"""kopf registration of the injection webhook: ``register(registry, settings)`` from the composition root.

- A copy of the ConfigRoutes (injection/routes.py), so an admission request is answered from memory (no
  API call inside the API server's webhook timeout), kept current on every replica: kopf peering pauses a
  standby's own indexes, but not its webhook server, and the webhook Service sends requests to any replica.
- ``@kopf.on.mutate`` on pods (CREATE): a pod without the ``configrefresh.io/inject`` annotation gets
  no patch; one with it gets the sidecar or a refusal naming the fix.
- The WebhookServer: HTTPS with the chart's certificate (files re-read on rotation). The
  MutatingWebhookConfiguration is the chart's (``settings.admission.managed`` stays None), so the operator
  needs no cluster-wide write permission on admission configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import kopf

from refresh_operator.injection.patch import InjectionRefused, apply_in_place, inject, request_from_pod
from refresh_operator.injection.routes import RouteSource, WatchedRoutes
from refresh_operator.injection.template import SidecarTemplate, load_template
from refresh_operator.settings import OperatorSettings

logger = logging.getLogger("refresh_operator.injection")

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
    *,
    source: RouteSource,
    namespaces: Sequence[str] | None,
) -> None:
    """Register the webhook on ``registry``; a no-op unless ``settings.injection_enabled``.

    ``source`` lists and watches ConfigRoutes (the operator's ``Kube``) in ``namespaces`` (None:
    cluster-wide), the namespaces the operator watches."""
    if not settings.injection_enabled:
        return
    if template is None:
        if settings.injection_template_file is None:
            raise ValueError("injection enabled without a sidecar template file")
        template = load_template(settings.injection_template_file)
    sidecar = template
    server_settings = settings
    routes = WatchedRoutes(source, namespaces)

    @kopf.on.startup(registry=registry, id="injection-server")
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.admission.server = webhook_server(server_settings)
        settings.admission.managed = None  # the chart renders the MutatingWebhookConfiguration
        routes.start()
        await routes.wait_ready()  # kopf starts the webhook server after the startup handlers

    @kopf.on.cleanup(registry=registry, id="injection-routes-stop")
    async def stop(**_: Any) -> None:
        routes.stop()

    @kopf.on.mutate("pods", registry=registry, id=HANDLER_ID, operations=["CREATE"], side_effects=False)
    def inject_pod(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        pod = dict(body)
        namespace = str((pod.get("metadata") or {}).get("namespace") or "")
        try:
            request = request_from_pod(pod)
            if request is None:
                return  # no annotation: never touched, no patch
            injected = inject(pod, routes.get(namespace, request.route), sidecar)
        except InjectionRefused as error:
            logger.info("refused injection into a pod of %s: %s", namespace, error)
            raise kopf.AdmissionError(f"configrefresh.io sidecar injection: {error}", code=400) from None
        if injected is not None:
            metadata = pod.get("metadata") or {}
            logger.info(
                "injecting the config-service sidecar into pod %s/%s (ConfigRoute %s)",
                namespace,
                metadata.get("name") or metadata.get("generateName") or "",
                request.route,
            )
            patch.fns.append(lambda target: apply_in_place(cast(dict[str, Any], target), injected))
