"""`configctl refresh`: push the current version of a parameter again, as a manual ConfigRefresh.

The version, type and modification time are read from Parameter Store (GetParameter without
decryption: the value itself is not needed and never leaves AWS here). One ConfigRefresh is created per
route that claims the parameter (or for the route named with --route), with `spec.source.trigger:
manual` and a fresh name, so it never collides with the event-driven object for the same version. The
object is built by the API package's `new_refresh`, the builder the operator's recorder uses.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import botocore.exceptions

from configctl.aws import describe_read_error, error_code
from configctl.exitcodes import ConfigctlError, ExitCode
from configctl.kube import Kube, routes_for
from configrefresh_api.matching import route_scope
from configrefresh_api.naming import refresh_name
from configrefresh_api.phases import Trigger
from configrefresh_api.refresh import ParameterRef, Source, new_refresh
from configrefresh_api.versions import Operation


def read_version(ssm: Any, name: str) -> dict[str, Any]:
    try:
        response = ssm.get_parameter(Name=name, WithDecryption=False)
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            raise ConfigctlError(
                f"parameter {name} not found in Parameter Store", exit_code=ExitCode.NOT_FOUND
            ) from None
        raise describe_read_error(exc, what=f"reading {name}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise describe_read_error(exc, what=f"reading {name}") from None
    parameter: dict[str, Any] = response["Parameter"]
    return parameter


def claiming_routes(kube: Kube, *, name: str, route: str | None) -> list[tuple[str, dict[str, str]]]:
    if route is not None:
        body = kube.get_route(route)
        if body is None:
            raise ConfigctlError(
                f"ConfigRoute {route} not found in {kube.namespace}", exit_code=ExitCode.NOT_FOUND
            )
        scope = route_scope(body, name)
        if scope is None:
            raise ConfigctlError(f"ConfigRoute {route} does not claim {name}", exit_code=ExitCode.NOT_FOUND)
        return [(route, scope)]
    claimed = routes_for(kube.list_routes(), name)
    if not claimed:
        raise ConfigctlError(
            f"no ConfigRoute in {kube.namespace} claims {name}", exit_code=ExitCode.NOT_FOUND
        )
    return claimed


def refresh_body(
    *,
    namespace: str,
    route: str,
    scope: dict[str, str],
    name: str,
    parameter: dict[str, Any],
    now: datetime.datetime,
) -> dict[str, Any]:
    """The manual ConfigRefresh of `parameter` (a GetParameter answer) on `route`, created at `now`."""
    version = int(parameter["Version"])
    modified = parameter.get("LastModifiedDate")
    refresh = new_refresh(
        namespace=namespace,
        route=route,
        parameter=ParameterRef(
            name=name,
            version=version,
            last_modified=modified if isinstance(modified, datetime.datetime) else None,
            operation=Operation.UPSERT,
            value_type=str(parameter.get("Type", "String")),
        ),
        scope=scope,
        source=Source(trigger=Trigger.MANUAL, event_id=f"configctl-{uuid.uuid4()}", event_time=now),
        # Named like the operator's objects, with the creation time in place of LastModifiedDate,
        # so it never collides with the event-driven object for the same version.
        name=refresh_name(route=route, parameter_name=name, version=version, last_modified=now),
    )
    return refresh.to_body()


def create_refreshes(kube: Kube, ssm: Any, *, name: str, route: str | None) -> list[dict[str, Any]]:
    """Create the manual ConfigRefresh objects; returns them as created."""
    parameter = read_version(ssm, name)
    now = datetime.datetime.now(datetime.UTC)
    return [
        kube.create_refresh(
            refresh_body(
                namespace=kube.namespace, route=r, scope=scope, name=name, parameter=parameter, now=now
            )
        )
        for r, scope in claiming_routes(kube, name=name, route=route)
    ]
