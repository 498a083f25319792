"""How one rollout calls its targets: deadlines, concurrency, retries, transport security and credentials.

A ConfigRoute's ``spec.refresh`` becomes one ``RefreshPolicy``; the TLS files and the token file are the
operator's own (mounted in its pod), never read from Secrets. The policy is a frozen value so it can key
cached channels and be compared between rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TlsSettings:
    """The operator's client side of TLS, from files mounted in its pod.

    With only ``ca_file`` this is server-authenticated TLS; with ``cert_file`` and ``key_file`` as well it is
    mutual TLS. ``server_name`` overrides the name checked against the server certificate (instances are
    dialled by IP, so their certificates usually name a service instead).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    ca_bundle: bytes | None = None
    """PEM CA certificates from the route (`tls.caBundle`), trusted in addition to ``ca_file``."""


@dataclass(frozen=True)
class RefreshPolicy:
    """Limits and credentials of one rollout.

    If unset: 2 s per call, 64 calls in flight, 3 attempts per target, 300 s for the whole rollout,
    plaintext, no token. A token (``token_file`` or ``token_audience``) or a SecureString value is never
    sent without TLS unless ``allow_plaintext`` (the route's ``insecureAllowPlaintext``) says so. Backoff
    between attempts is exponential from ``backoff_base_seconds`` up to ``backoff_max_seconds`` with full
    jitter, and never runs past the rollout's deadline.
    """

    timeout_seconds: float = 2.0
    max_concurrency: int = 64
    max_attempts: int = 3
    deadline_seconds: float = 300.0
    tls: TlsSettings | None = None
    token_file: str | None = None
    token_audience: str | None = None
    """Send a ServiceAccount token minted for this audience (TokenRequest), instead of a token file."""
    allow_plaintext: bool = False
    """The route's explicit opt-out: tokens and SecureString values may travel without TLS."""
    backoff_base_seconds: float = 0.1
    backoff_max_seconds: float = 5.0
    wait_for_ready: bool = False
    """Let a call wait (within its own timeout) for a connection instead of failing fast while the channel
    reconnects. Off by default: a failed attempt is retried by the fan-out's own backoff."""

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {self.timeout_seconds}")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.deadline_seconds <= 0:
            raise ValueError(f"deadline_seconds must be > 0, got {self.deadline_seconds}")
        if self.backoff_base_seconds < 0 or self.backoff_max_seconds < self.backoff_base_seconds:
            raise ValueError("backoff needs 0 <= backoff_base_seconds <= backoff_max_seconds")
