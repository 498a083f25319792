"""The operator's fan-out engine: push one parameter change to every instance, and find the instances.

Rollouts build a ``RefreshPolicy`` and a ``RefreshRequest`` from the route and the parameter
(``fanout.mapping``), find targets with ``discover_instances`` (Cloud Map, through
``refresh_operator.cloudmap``), and call ``FanOut.run``; anti-entropy asks ``FanOut.states`` what the
instances hold. One ``FanOut`` with its ``ChannelPool`` and ``BreakerRegistry`` lives for the operator's
lifetime so connections and breaker state carry over between rollouts and GetState passes. See
docs/fanout.md.
"""

from refresh_operator.backoff import backoff_bound, backoff_delays
from refresh_operator.cloudmap.discovery import DiscoveryError
from refresh_operator.fanout.breaker import BreakerRegistry, BreakerState, CircuitBreaker
from refresh_operator.fanout.channels import ChannelPool, CredentialFileError
from refresh_operator.fanout.engine import CANCELLED_ERROR, RETRYABLE_CODES, Clock, FanOut, is_retryable
from refresh_operator.fanout.policy import RefreshPolicy, TlsSettings
from refresh_operator.fanout.targets import Result, Target, TargetOutcome, discover_instances

__all__ = [
    "CANCELLED_ERROR",
    "RETRYABLE_CODES",
    "BreakerRegistry",
    "BreakerState",
    "ChannelPool",
    "CircuitBreaker",
    "Clock",
    "CredentialFileError",
    "DiscoveryError",
    "FanOut",
    "RefreshPolicy",
    "Result",
    "Target",
    "TargetOutcome",
    "TlsSettings",
    "backoff_bound",
    "backoff_delays",
    "discover_instances",
    "is_retryable",
]
