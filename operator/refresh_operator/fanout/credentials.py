"""The call credentials of one rollout's calls: the bearer token a route's policy asks for, as gRPC metadata.

Refresh and GetState calls carry the same credentials: a token read from the operator's token file, or a
ServiceAccount token minted for the route's audience. A missing or unreadable credential is raised as
``CredentialFileError`` or ``TokenError`` so the caller fails (or skips) the whole call set with one reason.
"""

from __future__ import annotations

from refresh_operator.fanout.channels import CredentialFileError
from refresh_operator.fanout.policy import RefreshPolicy
from refresh_operator.fanout.tokens import TokenCache

Metadata = tuple[tuple[str, str], ...]


def read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise CredentialFileError(f"cannot read token file {path}: {exc.strerror or exc}") from exc
    if not token:
        raise CredentialFileError(f"token file {path} is empty")
    return token


async def call_metadata(policy: RefreshPolicy, tokens: TokenCache | None) -> Metadata:
    """The `authorization` metadata of calls made under `policy` (empty without a token)."""
    if policy.token_audience is not None:
        if tokens is None:
            raise CredentialFileError(
                "auth.type serviceAccountToken needs the operator's ServiceAccount "
                "(CONFIG_REFRESH_SERVICE_ACCOUNT_NAME and _NAMESPACE, set by the chart)"
            )
        token = await tokens.token(policy.token_audience)
        return (("authorization", f"Bearer {token}"),)
    if policy.token_file is not None:
        return (("authorization", f"Bearer {read_token(policy.token_file)}"),)
    return ()
