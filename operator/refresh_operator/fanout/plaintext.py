"""The fan-out's last line of defence against secrets in clear: no bearer token and no SecureString value
goes out over a plaintext channel unless the route opted out (`spec.refresh.insecureAllowPlaintext`).

Routes are validated before they are indexed (a token on a TLS-off route makes it not Ready) and the
rollout turns SecureStrings on plaintext routes into invalidations, so this check should never fire; it
exists so that a bug in either of those cannot leak a credential. Apart from the engine because it reads
the protobuf request and the policy and nothing else.
"""

from __future__ import annotations

from configrefresh.v1 import refresh_service_pb2 as pb
from refresh_operator.fanout.policy import RefreshPolicy

PLAINTEXT_ERROR = (
    "PlaintextCredentials: refused to send {what} without TLS; enable spec.refresh.tls, use "
    "payload: invalidate, or set spec.refresh.insecureAllowPlaintext"
)


def plaintext_refusal(request: pb.RefreshRequest, policy: RefreshPolicy) -> str | None:
    """Why this call may not go out over plaintext, or None. The last line of defence: routes are
    validated before they are indexed, and SecureStrings are turned into invalidations before this."""
    refusal = token_refusal(policy)
    if refusal is not None or policy.tls is not None or policy.allow_plaintext:
        return refusal
    if request.value_type == pb.VALUE_TYPE_SECURE_STRING and (
        request.payload_mode == pb.PAYLOAD_MODE_VALUE and request.value
    ):
        return PLAINTEXT_ERROR.format(what="a SecureString value")
    return None


def token_refusal(policy: RefreshPolicy) -> str | None:
    """Why no call (Refresh or GetState) under `policy` may go out: a token would travel in clear."""
    if policy.tls is not None or policy.allow_plaintext:
        return None
    if policy.token_file is not None or policy.token_audience is not None:
        return PLAINTEXT_ERROR.format(what="a bearer token")
    return None
