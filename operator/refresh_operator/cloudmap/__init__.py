"""Everything the operator says to AWS Cloud Map: finding instances and registering them.

- ``client``: how calls are made (in a thread, throttling backoff with full jitter), the look-ups both
  users share (a service by names, an instance listing, health), and the errors they raise.
- ``discovery``: the HEALTHY instances matching a route's attributes, for the fan-out and anti-entropy.
- ``registration``: podSync's writes (register, health, deregister, each waited to completion) and the
  listing they are planned against.

It imports nothing of the operator but ``refresh_operator.backoff``: the fan-out turns instances into
targets, podSync decides what to write.
"""

from refresh_operator.cloudmap.client import (
    CloudMapError,
    Instance,
    InstanceNotFound,
    ServiceRef,
    make_client,
)
from refresh_operator.cloudmap.discovery import DiscoveryError, healthy_instances
from refresh_operator.cloudmap.registration import Registrar

__all__ = [
    "CloudMapError",
    "DiscoveryError",
    "Instance",
    "InstanceNotFound",
    "Registrar",
    "ServiceRef",
    "healthy_instances",
    "make_client",
]
