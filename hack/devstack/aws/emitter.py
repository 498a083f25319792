"""Parameter Store change events for moto, installed inside the moto server process only.

moto's Parameter Store keeps parameters but publishes nothing. This module wraps four methods of moto's
SSM backend (PutParameter, DeleteParameter, DeleteParameters, LabelParameterVersion) so that after a
successful call the exact AWS "Parameter Store Change" envelope (devstack.aws.events) goes to the
EventBridge default bus of the same account and region. From there moto's own rule matching and moto's
SQS target delivery take over, as they would for a real AWS service event.

Why not moto's PutEvents: that path gives the event a new id, drops `account` from what reaches SQS and
adds moto-only fields; an AWS service event keeps its own envelope. So the envelope is handed to each
enabled rule of the default bus (`Rule.send_to_targets`), which is the step PutEvents itself ends in.
Unlike moto's PutEvents (PITFALLS.md), disabled rules are skipped, as AWS does.

The wrapped calls happen inside the server, never over HTTP, so the request counter never sees them.
Publishing is best effort, like AWS's: a failure is logged to the server's log, the API call still
succeeds.
"""

from __future__ import annotations

import calendar
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from devstack.aws.events import Operation, new_event_id, parameter_change_event

_log = logging.getLogger("devstack.emitter")
_INSTALLED_MARK = "_devstack_emitter_installed"


def publish_parameter_change(
    *,
    account_id: str,
    region: str,
    name: str,
    parameter_type: str,
    operation: Operation,
    description: str | None = None,
) -> dict[str, Any]:
    """Build the envelope and route it through the default bus's rules; returns the envelope."""
    moment = datetime.now(UTC).replace(microsecond=0)
    envelope = parameter_change_event(
        name=name,
        parameter_type=parameter_type,
        operation=operation,
        account_id=account_id,
        region=region,
        event_id=new_event_id(),
        moment=moment,
        description=description,
    )
    try:
        _route_to_default_bus(account_id=account_id, region=region, envelope=envelope, moment=moment)
    except Exception:
        _log.exception("could not publish %s event for %s", operation, name)
    return envelope


def _route_to_default_bus(
    *, account_id: str, region: str, envelope: dict[str, Any], moment: datetime
) -> None:
    from moto.events.models import events_backends

    bus = events_backends[account_id][region].describe_event_bus("default")
    for rule in list(bus.rules.values()):
        if rule.state == "DISABLED":
            continue
        message: Any = dict(envelope)
        # moto's SQS target turns a Unix timestamp into the ISO form; the envelope's second-precision
        # time survives the round trip unchanged.
        message["time"] = calendar.timegm(moment.utctimetuple())
        transform = any("InputTransformer" in target for target in rule.targets)
        rule.send_to_targets(message, transform_input=transform)


def install() -> None:
    """Wrap moto's SSM backend methods once per process; later calls do nothing."""
    from moto.ssm.models import SimpleSystemManagerBackend as backend_class

    if getattr(backend_class, _INSTALLED_MARK, False):
        return
    setattr(backend_class, "put_parameter", _wrap_put(backend_class.put_parameter))  # noqa: B010
    setattr(backend_class, "delete_parameter", _wrap_delete(backend_class.delete_parameter))  # noqa: B010
    setattr(backend_class, "delete_parameters", _wrap_delete_many(backend_class.delete_parameters))  # noqa: B010
    setattr(  # noqa: B010
        backend_class, "label_parameter_version", _wrap_label(backend_class.label_parameter_version)
    )
    setattr(backend_class, _INSTALLED_MARK, True)


def _existing(backend: Any, name: str) -> Any:
    """The latest version of a parameter before a call changes it, or None."""
    try:
        return backend.get_parameter(name)
    except Exception:
        return None


def _wrap_put(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def put_parameter(self: Any, *args: Any, **kwargs: Any) -> Any:
        parameter = original(self, *args, **kwargs)
        publish_parameter_change(
            account_id=self.account_id,
            region=self.region_name,
            name=parameter.name,
            parameter_type=parameter.parameter_type,
            operation="Create" if parameter.version == 1 else "Update",
            description=parameter.description,
        )
        return parameter

    return put_parameter


def _wrap_delete(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def delete_parameter(self: Any, name: str) -> Any:
        before = _existing(self, name)
        result = original(self, name)
        if before is not None:
            publish_parameter_change(
                account_id=self.account_id,
                region=self.region_name,
                name=before.name,
                parameter_type=before.parameter_type,
                operation="Delete",
                description=before.description,
            )
        return result

    return delete_parameter


def _wrap_delete_many(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def delete_parameters(self: Any, names: list[str]) -> list[str]:
        before = {name: _existing(self, name) for name in names}
        deleted: list[str] = original(self, names)
        for name in deleted:
            parameter = before.get(name)
            if parameter is None:
                continue
            publish_parameter_change(
                account_id=self.account_id,
                region=self.region_name,
                name=parameter.name,
                parameter_type=parameter.parameter_type,
                operation="Delete",
                description=parameter.description,
            )
        return deleted

    return delete_parameters


def _wrap_label(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def label_parameter_version(self: Any, name: str, version: int, labels: list[str]) -> Any:
        result = original(self, name, version, labels)
        invalid_labels = result[0]
        if len(invalid_labels) < len(labels):
            parameter = _existing(self, name)
            if parameter is not None:
                publish_parameter_change(
                    account_id=self.account_id,
                    region=self.region_name,
                    name=parameter.name,
                    parameter_type=parameter.parameter_type,
                    operation="LabelParameterVersion",
                    description=parameter.description,
                )
        return result

    return label_parameter_version
