"""What the operator's loops and rollouts share, built once by the runtime at kopf startup.

The consumer, the resync, the anti-entropy pass and the rollouts each take this one object (and what is
theirs alone), in the manner of kopf's own memo: one place names the shared dependencies.
"""

from __future__ import annotations

import dataclasses

from refresh_operator.aws import AwsClients, Blocking
from refresh_operator.cloudmap.prefetch import DiscoveryPrefetch
from refresh_operator.kube import Kube
from refresh_operator.routes import RouteIndex
from refresh_operator.settings import OperatorSettings
from refresh_operator.values import ValueCache


@dataclasses.dataclass(frozen=True)
class OperatorContext:
    settings: OperatorSettings
    clients: AwsClients
    blocking: Blocking
    kube: Kube
    routes: RouteIndex
    values: ValueCache
    discovery: DiscoveryPrefetch = dataclasses.field(default_factory=DiscoveryPrefetch)
    """Cloud Map discoveries the consumer starts with a change and the rollouts take."""
