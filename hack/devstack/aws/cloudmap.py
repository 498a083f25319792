"""Cloud Map behaviour moto lacks and the project relies on, patched inside the moto server process.

Four AWS behaviours the operator's pod sync and discovery depend on (Cloud Map API reference,
RegisterInstance, DiscoverInstances and GetService), each missing from moto 5.2:

- RegisterInstance with an InstanceId that exists updates that instance (moto appends a duplicate).
  AWS recreates the custom health check on re-registration, so the health starts over.
- The attribute AWS_INIT_HEALTH_STATUS (HEALTHY or UNHEALTHY) sets the initial custom health status
  (moto always starts HEALTHY).
- DiscoverInstances returns at most MaxResults instances, 100 when it is not given, and has no paging
  (moto returns every instance), so a caller that forgets MaxResults sees the truncation here too.
- A service (GetService, ListServices) states its InstanceCount, the number of instances registered.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

DISCOVER_DEFAULT_MAX_RESULTS = 100
_INSTALLED_MARK = "_devstack_cloudmap_installed"


def install() -> None:
    """Patch moto's Cloud Map backend and response once per process."""
    from moto.servicediscovery.models import Service, ServiceDiscoveryBackend
    from moto.servicediscovery.responses import ServiceDiscoveryResponse

    if getattr(ServiceDiscoveryBackend, _INSTALLED_MARK, False):
        return
    register = _wrap_register(ServiceDiscoveryBackend.register_instance)
    discover = _wrap_discover(ServiceDiscoveryResponse.discover_instances)
    setattr(ServiceDiscoveryBackend, "register_instance", register)  # noqa: B010
    setattr(ServiceDiscoveryResponse, "discover_instances", discover)  # noqa: B010
    setattr(Service, "to_json", _wrap_service_json(Service.to_json))  # noqa: B010
    setattr(ServiceDiscoveryBackend, _INSTALLED_MARK, True)


def _wrap_register(original: Callable[..., str]) -> Callable[..., str]:
    @functools.wraps(original)
    def register_instance(
        self: Any,
        service_id: str,
        instance_id: str,
        creator_request_id: str,
        attributes: dict[str, str],
    ) -> str:
        service = self.get_service(service_id)
        service.instances[:] = [i for i in service.instances if i.instance_id != instance_id]
        operation_id = original(self, service_id, instance_id, creator_request_id, attributes)
        initial = (attributes or {}).get("AWS_INIT_HEALTH_STATUS", "HEALTHY")
        if initial in ("HEALTHY", "UNHEALTHY"):
            self.get_instance(service_id, instance_id).health_status = initial
        return operation_id

    return register_instance


def _wrap_discover(original: Callable[[Any], str]) -> Callable[[Any], str]:
    @functools.wraps(original)
    def discover_instances(self: Any) -> str:
        params = json.loads(self.body or "{}")
        if params.get("MaxResults") is None:
            params["MaxResults"] = DISCOVER_DEFAULT_MAX_RESULTS
            self.body = json.dumps(params)
        return original(self)

    return discover_instances


def _wrap_service_json(original: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    @functools.wraps(original)
    def to_json(self: Any) -> dict[str, Any]:
        return {**original(self), "InstanceCount": len(self.instances)}

    return to_json
