"""kopf handlers: ConfigRoute validation and indexing, ConfigRefresh rollouts, start-up and shut-down.

Handlers are registered on an explicit registry by `register()` (no import-time side effects), closing
over the one `Runtime`. Status is written explicitly into the fields the CRDs declare; handlers return
nothing, because kopf would store a return value under `status.<handler id>`, which the structural
schema prunes. kopf's own bookkeeping lives in annotations under `kopf.configrefresh.io/`.

Login: kopf's own session has no connection limit, and it handles every object in its own worker, so at
start-up with 1,000 ConfigRoutes it opened up to 1,000 TLS connections to the API server at once (each
with asyncio's 256 KiB read buffer and OpenSSL's state): about 0.25 MiB per route that the process never
gave back. The login handler takes the same credentials kopf's default login would (the kubernetes
client's in-cluster or kubeconfig configuration) and builds the session with a bounded pool, sized to
hold every watch stream plus room for the handlers' patches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp
import kopf

from configrefresh_api import groupversion as api
from configrefresh_api.conditions import condition, merge_conditions
from configrefresh_api.labels import KOPF_PREFIX, ROLLOUT_ACTION_ANNOTATION
from configrefresh_api.phases import HALTED
from refresh_operator.leadership import DEFAULT_LIFETIME_SECONDS, Peering, peerings_for
from refresh_operator.rollouts import RetryLater
from refresh_operator.routes import RouteError
from refresh_operator.runtime import Runtime

ROUTES = (api.GROUP, api.VERSION, api.ROUTES)
REFRESHES = (api.GROUP, api.VERSION, api.REFRESHES)


def configure(
    settings: kopf.OperatorSettings, *, peering_lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS
) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{KOPF_PREFIX}/finalizer"
    settings.posting.loggers = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # kopf gives up on its watchers (and the operator stops) once this list is used up, so it must
    # outlast a control-plane restart: about 25 minutes. Steps stay at 10 s: the wait after the API
    # server returns is the step in progress, and 60 s steps held rollouts back 52 s after a 60 s outage.
    settings.networking.error_backoffs = [1, 2, 5, *([10] * 150)]
    # A replica killed without a clean stop stays "alive" in the peering until lastseen + lifetime: the
    # standby waits that long before it takes over (kopf sends a keep-alive 5-10 s before expiry).
    settings.peering.lifetime = peering_lifetime_seconds


def peerings(settings: kopf.OperatorSettings, namespaces: Sequence[str] | None) -> list[Peering]:
    """The peering objects kopf coordinates this replica through, from the settings kopf filled in from
    --standalone / --peering / --priority and the scope (one per watched namespace when namespaced)."""
    peering = settings.peering
    return peerings_for(
        name=peering.name,
        priority=peering.priority,
        standalone=peering.standalone,
        clusterwide=peering.clusterwide,
        mandatory=peering.mandatory,
        namespaces=namespaces,
    )


API_REQUEST_CONNECTIONS = 24
"""Connections to the API server for requests (patches, events, lists) beside the watch streams."""
WATCHES_PER_NAMESPACE = 4
"""Watch streams kopf holds per watched namespace: ConfigRoutes, ConfigRefreshes, Pods (podSync), spare."""
PEERING_WATCHES = 2


def api_connection_limit(namespaces: Sequence[str] | None) -> int:
    """Connections kopf may hold to the API server: every long-lived watch stream plus a request pool.

    A watch holds its connection for up to server_timeout, so the limit grows with the namespaces watched
    (cluster-wide: one watch per resource); requests beyond the pool wait for a free connection."""
    watched = 1 if namespaces is None else max(1, len(namespaces))
    return API_REQUEST_CONNECTIONS + WATCHES_PER_NAMESPACE * watched + PEERING_WATCHES


def bounded_session(info: kopf.ConnectionInfo, *, limit: int) -> kopf.AiohttpSession:
    """The session kopf would build from `info` (same TLS, headers, proxy), with at most `limit`
    connections. Must run on the operator's event loop (aiohttp binds the session to it)."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
        aiohttp_session=session,
    )


def channel_condition(obj: dict[str, Any], generation: int) -> dict[str, Any]:
    """The route's `SecureChannel` condition: whether tokens and SecureString values are protected."""
    refresh = (obj.get("spec") or {}).get("refresh") or {}
    tls = bool((refresh.get("tls") or {}).get("enabled"))
    payload = refresh.get("payload", "value")
    if tls:
        return condition(
            "SecureChannel", status=True, reason="TLS", message="Refresh calls use TLS", generation=generation
        )
    if refresh.get("insecureAllowPlaintext"):
        return condition(
            "SecureChannel",
            status=False,
            reason="InsecureAllowPlaintext",
            message="TLS is off and insecureAllowPlaintext is set: tokens and SecureString values travel "
            "in clear",
            generation=generation,
        )
    message = "TLS is off: no token is sent"
    if payload == "value":
        message += "; SecureStrings are pushed as invalidate (instances re-read them with their own IAM)"
    return condition(
        "SecureChannel",
        status=False,
        reason="SecureStringsAsInvalidate" if payload == "value" else "Plaintext",
        message=message,
        generation=generation,
    )


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    @kopf.on.login(registry=registry, id="login-bounded")
    async def login(logger: kopf.Logger, settings: kopf.OperatorSettings, **_: Any) -> kopf.AiohttpSession:
        # kopf's default login (kubernetes client: in-cluster, then kubeconfig) reads files: off the loop.
        info = await asyncio.to_thread(kopf.login_via_client, logger=logger, settings=settings)
        if info is None:
            raise kopf.LoginError("the kubernetes client library is not installed")
        return bounded_session(info, limit=api_connection_limit(runtime.namespaces))

    @kopf.on.startup(registry=registry, id="runtime-start")
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, peering_lifetime_seconds=runtime.settings.peering_lifetime_seconds)
        await runtime.start(peerings=peerings(settings, runtime.namespaces))

    @kopf.on.cleanup(registry=registry, id="runtime-stop")
    async def stop(**_: Any) -> None:
        await runtime.stop()

    @kopf.on.probe(id="routes", registry=registry)
    def routes_indexed(**_: Any) -> int:
        return len(runtime.routes)

    @kopf.on.resume(*ROUTES, registry=registry, id="route")
    @kopf.on.create(*ROUTES, registry=registry, id="route")
    @kopf.on.update(*ROUTES, registry=registry, id="route")
    async def route_changed(
        body: kopf.Body,
        meta: kopf.Meta,
        patch: kopf.Patch,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        generation = int(meta.get("generation") or 0)
        obj = {"metadata": dict(meta), "spec": dict(body.get("spec") or {})}
        try:
            route = runtime.admission.admit(obj)
        except RouteError as error:
            runtime.routes.remove(meta.namespace or "", meta.name or "")
            ready = condition(
                "Ready", status=False, reason=error.reason, message=str(error), generation=generation
            )
            logger.warning("ConfigRoute rejected: %s", error)
            kopf.warn(body, reason=error.reason, message=str(error))
        else:
            runtime.routes.upsert(route)
            message = f"claims parameters under {route.prefix}"
            if route.refresh.secure_strings_invalidated:
                message += "; SecureStrings are pushed as invalidate (TLS is off)"
            ready = condition("Ready", status=True, reason="Indexed", message=message, generation=generation)
        existing = (body.get("status") or {}).get("conditions") or []
        patch.status["conditions"] = merge_conditions(existing, [ready, channel_condition(obj, generation)])
        patch.status["observedGeneration"] = generation

    @kopf.on.delete(*ROUTES, registry=registry, optional=True, id="route-deleted")
    async def route_deleted(meta: kopf.Meta, **_: Any) -> None:
        runtime.routes.remove(meta.namespace or "", meta.name or "")

    @kopf.on.resume(*REFRESHES, registry=registry, id="rollout")
    @kopf.on.create(*REFRESHES, registry=registry, id="rollout")
    async def rollout(
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        retry: int,
        **_: Any,
    ) -> None:
        def post_event(kind: str, reason: str, message: str) -> None:
            kopf.event(body, type=kind, reason=reason, message=message[:1024])

        try:
            await runtime.rollouts.run(
                namespace=meta.namespace or "",
                name=meta.name or "",
                spec=dict(spec),
                current=dict(body.get("status") or {}),
                generation=int(meta.get("generation") or 0),
                post_event=post_event,
                retry=retry,
                uid=meta.uid or "",
            )
        except RetryLater as later:
            raise kopf.TemporaryError(str(later), delay=later.delay) from None

    @kopf.on.update(
        *REFRESHES,
        registry=registry,
        id="rollout-action",
        annotations={ROLLOUT_ACTION_ANNOTATION: kopf.PRESENT},
        field=("metadata", "annotations", ROLLOUT_ACTION_ANNOTATION),
    )
    async def rollout_action(
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        new: Any,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        """`configctl rollout resume|abort`: act on a Halted rollout; anything else is ignored."""

        def post_event(kind: str, reason: str, message: str) -> None:
            kopf.event(body, type=kind, reason=reason, message=message[:1024])

        current = dict(body.get("status") or {})
        if current.get("phase") != HALTED:
            logger.info("rollout action %r ignored: the rollout is %s", new, current.get("phase"))
            return
        namespace, name = meta.namespace or "", meta.name or ""
        generation = int(meta.get("generation") or 0)
        if str(new).startswith("abort"):
            await runtime.rollouts.abort(
                namespace=namespace,
                name=name,
                current=current,
                generation=generation,
                post_event=post_event,
                uid=meta.uid or "",
            )
            return
        if str(new).startswith("resume"):
            post_event("Normal", "Resumed", "resumed by request: the next wave starts")
            try:
                await runtime.rollouts.run(
                    namespace=namespace,
                    name=name,
                    spec=dict(spec),
                    current=current,
                    generation=generation,
                    post_event=post_event,
                    resume=True,
                    uid=meta.uid or "",
                )
            except RetryLater as later:
                raise kopf.TemporaryError(str(later), delay=later.delay) from None
