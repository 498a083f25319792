"""One ConfigRefresh rollout, start to end: admit the route, settle which version goes out, take over from
older rollouts of the same parameter (supersession.py), and hand the fan-out to execution.py.

A Halted rollout waits for `configctl rollout resume|abort`: `run(resume=True)` starts its next wave,
`abort` ends it Failed.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
from collections.abc import Mapping
from typing import Any

from configrefresh_api.phases import HALTED, Trigger
from configrefresh_api.refresh import ConfigRefreshSpec
from configrefresh_api.times import canonical_time
from refresh_operator import kube, metrics, status
from refresh_operator.boundary import admission_from_settings
from refresh_operator.context import OperatorContext
from refresh_operator.fanout import RefreshPolicy, discover_instances
from refresh_operator.fanout.mapping import OperatorCredentials, effective_payload, policy_for
from refresh_operator.kube import KubeError
from refresh_operator.parameter_store import ParameterSnapshot, ParameterStoreError, read_parameter
from refresh_operator.rollouts.execution import Change, Discover, Execution, ExecutionSettings
from refresh_operator.rollouts.model import EventPoster, RetryLater, Subject
from refresh_operator.rollouts.status_writer import StatusWriter
from refresh_operator.rollouts.supersession import Supersession
from refresh_operator.rollouts.wave_runner import WaveFanOut, WaveRunner
from refresh_operator.routes import Route, RouteError
from refresh_operator.settings import OperatorSettings

logger = logging.getLogger("refresh_operator.rollouts")


def credentials_from_settings(settings: OperatorSettings) -> OperatorCredentials:
    def text(path: object) -> str | None:
        return str(path) if path else None

    return OperatorCredentials(
        tls_ca_file=text(settings.tls_ca_file),
        tls_cert_file=text(settings.tls_cert_file),
        tls_key_file=text(settings.tls_key_file),
        token_file=text(settings.token_file),
    )


class Rollouts:
    """Runs ConfigRefresh rollouts; one instance per operator process."""

    def __init__(
        self,
        *,
        context: OperatorContext,
        fanout: WaveFanOut,
        discover: Discover | None = None,
    ) -> None:
        self._context = context
        self._credentials = credentials_from_settings(context.settings)
        self._admission = admission_from_settings(context.settings)
        self._writer = StatusWriter(blocking=context.blocking, kube_api=context.kube, values=context.values)
        self._supersession = Supersession(
            writer=self._writer, blocking=context.blocking, kube_api=context.kube, values=context.values
        )
        self._execution = Execution(
            settings=ExecutionSettings(
                instances_cap=context.settings.instances_cap,
                status_patch_interval_seconds=context.settings.status_patch_interval_seconds,
            ),
            cloud_map=context.clients.servicediscovery,
            discover=discover
            or functools.partial(discover_instances, source=context.discovery.healthy_instances),
            routing=self._admission.routing,
            writer=self._writer,
            supersession=self._supersession,
            waves=WaveRunner(fanout=fanout, health_gates=self._admission.health_gates),
            policy_for=self.policy,
        )

    def policy(self, route: Route) -> RefreshPolicy:
        """How instances of `route` are called (timeouts, concurrency, TLS, token)."""
        return policy_for(route.refresh, self._credentials)

    async def run(
        self,
        *,
        namespace: str,
        name: str,
        spec: Mapping[str, Any],
        current: Mapping[str, Any],
        generation: int,
        post_event: EventPoster,
        retry: int = 0,
        resume: bool = False,
        uid: str = "",
    ) -> None:
        subject = Subject(namespace, name, generation, current, post_event, uid)
        settled = self._writer.settled(subject)
        if settled is not None and not (resume and settled == HALTED):
            # kopf handed over a copy of the object from before this process ended the rollout.
            metrics.STALE_RUNS_SKIPPED.inc()
            logger.info(
                "ConfigRefresh %s/%s already ended %s here; a handler run on an older copy does nothing",
                namespace,
                name,
                settled,
            )
            return
        if subject.phase in status.TERMINAL_PHASES:
            return
        if subject.phase == HALTED and not resume:
            return  # waits for `configctl rollout resume|abort`
        if resume:
            self._writer.reopen(subject)
        self._context.discovery.rollout_started()
        order = ConfigRefreshSpec.from_body(spec)
        parameter = order.parameter
        try:
            route = await self._route(namespace, order.route)
            if not parameter.name.startswith(route.prefix):
                raise RouteError(
                    "OutsideRoute", f"{parameter.name} is not under the route's prefix {route.prefix}"
                )
            scope = dict(order.scope)
            if not scope and route.scope_pattern is not None:
                scope = route.scope_of(parameter.name) or {}
        except RouteError as error:
            ready = status.condition(
                "Ready", status=False, reason=error.reason, message=str(error), generation=generation
            )
            await self._writer.finish(subject, phase=status.FAILED, extra={}, conditions=[ready])
            post_event("Warning", "Failed", f"{error.reason}: {error}")
            return

        snapshot = self._context.values.take(namespace, name)
        spec_key = parameter.key
        if snapshot is None or spec_key is None or snapshot.key != spec_key:
            manual = order.source.trigger is Trigger.MANUAL
            deleted_at = (
                datetime.datetime.now(datetime.UTC)
                if manual or parameter.last_modified is None
                else parameter.last_modified
            )
            snapshot = await self._read(
                parameter.name,
                with_value=effective_payload(route, parameter.value_type) == "value",
                deleted_at=deleted_at,
            )
            if spec_key is None or manual:
                post_event(
                    "Normal",
                    "VersionResolved",
                    f"pushing the current state of {snapshot.name}: {snapshot.operation} v{snapshot.version} "
                    f"of {canonical_time(snapshot.last_modified)}",
                )
            elif snapshot.key > spec_key:
                await self._supersession.supersede_by_store(subject, route, scope, snapshot)
                return

        # A targeted repair (anti-entropy) runs beside the rollouts of its parameter, never superseding one.
        only = frozenset(order.targets) or None
        run_key = (namespace, route.name, parameter.name if only is None else f"{parameter.name} repair")
        with self._supersession.running(run_key, snapshot.key, name) as mine:
            if isinstance(mine, str):
                await self._supersession.mark_superseded(subject, mine)
                return
            change = Change(route, scope, snapshot, only=only, retry=retry, resume=resume)
            if only is not None:
                await self._execution.execute(subject, change, mine)
                return
            # Older Halted rollouts are found with an API list: beside the fan-out, not in front of it
            # (issue 20: the list was a fifth of the time from the handler's start to the first call).
            executed, halted = await asyncio.gather(
                self._execution.execute(subject, change, mine),
                self._supersession.supersede_halted(
                    namespace, route, parameter.name, snapshot.key, name, post_event
                ),
                return_exceptions=True,
            )
            if isinstance(halted, BaseException):
                logger.warning("Halted rollouts of %s not marked Superseded: %s", parameter.name, halted)
            if isinstance(executed, BaseException):
                raise executed

    async def abort(
        self,
        *,
        namespace: str,
        name: str,
        current: Mapping[str, Any],
        generation: int,
        post_event: EventPoster,
        uid: str = "",
    ) -> None:
        """A Halted rollout is given up: Failed, with an Aborted condition; instances keep what they hold."""
        if current.get("phase") != HALTED:
            return
        message = "aborted by request while halted; instances not yet refreshed keep their version"
        await self._writer.finish(
            Subject(namespace, name, generation, current, post_event, uid),
            phase=status.FAILED,
            extra={},
            conditions=[
                status.condition(
                    "Ready", status=False, reason="Aborted", message=message, generation=generation
                ),
                status.condition(
                    "Halted", status=False, reason="Aborted", message=message, generation=generation
                ),
            ],
        )
        post_event("Warning", "Aborted", message)

    async def _route(self, namespace: str, name: str) -> Route:
        route = self._context.routes.get(namespace, name)
        if route is not None:
            return route
        try:
            obj = await self._context.blocking.call(self._context.kube.get, kube.ROUTES, namespace, name)
        except KubeError as error:
            raise RetryLater(f"cannot read ConfigRoute {name}: {error}", delay=5) from None
        if obj is None:
            raise RouteError("RouteNotFound", f"ConfigRoute {namespace}/{name} does not exist")
        return self._admission.admit(obj)

    async def _read(self, name: str, *, with_value: bool, deleted_at: datetime.datetime) -> ParameterSnapshot:
        try:
            snapshot = await self._context.blocking.call(
                read_parameter,
                self._context.clients.ssm,
                name=name,
                with_value=with_value,
                deleted_at=deleted_at,
            )
        except ParameterStoreError as error:
            metrics.PARAMETER_STORE_CALLS.labels("GetParameter", "error").inc()
            raise RetryLater(str(error), delay=5) from None
        metrics.PARAMETER_STORE_CALLS.labels(
            "GetParameter", "not_found" if snapshot.version == 0 else "ok"
        ).inc()
        return snapshot
