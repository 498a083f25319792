"""Whether an address, a bind host or a gRPC peer stays on this host: the one test behind both the
settings rules (a port bound to loopback needs no TLS) and the call check (a bearer token from this host
never crossed a network)."""

from __future__ import annotations

import ipaddress
import urllib.parse


def is_loopback_address(host: str) -> bool:
    """Whether an address or host name only reaches this host: any address in 127.0.0.0/8 (the whole
    block is loopback for the operating system, not just 127.0.0.1), ::1, an IPv4-mapped loopback, or
    the name localhost. Brackets, a zone index and surrounding blanks are ignored."""
    host = host.strip()
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_loopback_peer(peer: str) -> bool:
    """Whether a gRPC peer string (`ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`, `unix:...`) is on this host:
    any 127.0.0.0/8 address, ::1, an IPv4-mapped loopback, or a Unix socket."""
    scheme, _, rest = peer.partition(":")
    rest = urllib.parse.unquote(rest)
    if scheme in ("unix", "unix-abstract"):
        return True
    if scheme in ("ipv4", "ipv6"):
        return is_loopback_address(rest.rsplit(":", 1)[0])
    return False
