"""The boundary between namespaces: what a namespace's ConfigRoutes may reach, as the cluster admin set it.

Anyone who can edit ConfigRoutes in one namespace must not be able to route another team's parameters
(secrets included) to pods of their own, nor aim the operator at addresses of the admin's choosing. Three
rules, all from the operator's settings (chart values), none from the routes themselves:

- Parameter prefixes: a route's `parameterPrefix` must lie under a prefix the admin allowed its
  namespace (`routing.allowedPrefixes`). Matching is by path segment: "/team-a" allows "/team-a" and
  "/team-a/x", never "/team-ab". A route outside its allowance is refused (reason PrefixNotAllowed) and
  never indexed, so the consumer never matches it. A single-tenant cluster turns the rule off with
  `routing.unrestricted: true`. The default allows nothing: every namespace must be granted its prefixes.
- Discovery: a route's targets are the Cloud Map instances owned by its namespace (attribute
  `k8s-namespace`, which podSync and config-service's self-registration set), unless the admin listed the
  Cloud Map service as shared (`routing.sharedServices`, "<cloud map namespace>/<service>").
- Health gates: `rollout.healthGate.url` may name only hosts on the admin's allow-list (in-cluster service
  names by default), and its address is resolved when the gate is checked and refused when it is
  link-local (the instance-metadata endpoint included), unspecified, multicast or, unless the admin allows
  it for a local test stack, loopback. The request goes to the address that was checked, so a DNS answer
  that changes between check and connect (rebinding) cannot redirect it. Redirects are not followed.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import http.client
import ipaddress
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from refresh_operator.fanout.targets import Target
from refresh_operator.routes import Route, RouteError, route_from_object
from refresh_operator.settings import OperatorSettings

NAMESPACE_ATTRIBUTE = "k8s-namespace"
"""The Cloud Map instance attribute naming the Kubernetes namespace that owns the instance."""

DEFAULT_HEALTH_GATE_HOSTS = ("*.svc", "*.svc.cluster.local")

_METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # EC2/EKS instance metadata (IMDS), also GCP/Azure
        ipaddress.ip_address("169.254.170.2"),  # ECS task metadata / EKS Pod Identity agent
        ipaddress.ip_address("169.254.170.23"),  # EKS Pod Identity agent
        ipaddress.ip_address("fd00:ec2::254"),  # IMDS over IPv6
        ipaddress.ip_address("fd00:ec2::23"),  # EKS Pod Identity agent over IPv6
    }
)


def prefix_within(prefix: str, allowed: str) -> bool:
    """Whether `prefix` lies under `allowed`, by whole path segments."""
    if prefix == allowed:
        return True
    base = allowed if allowed.endswith("/") else allowed + "/"
    return prefix.startswith(base)


@dataclasses.dataclass(frozen=True)
class RoutingPolicy:
    """The admin's allowances (from `OperatorSettings`)."""

    unrestricted: bool = False
    allowed_prefixes: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Kubernetes namespace → parameter prefixes its routes may claim; key "*" applies to every namespace."""
    shared_services: frozenset[str] = frozenset()
    """Cloud Map services ("<namespace>/<service>") whose instances any namespace's routes may target."""

    def allowed_for(self, namespace: str) -> tuple[str, ...]:
        return (*self.allowed_prefixes.get(namespace, ()), *self.allowed_prefixes.get("*", ()))

    def check_route(self, route: Route) -> None:
        """Raise RouteError(PrefixNotAllowed) when the route's namespace may not claim its prefix."""
        if self.unrestricted:
            return
        allowed = self.allowed_for(route.namespace)
        if any(prefix_within(route.prefix, entry) for entry in allowed):
            return
        granted = ", ".join(allowed) if allowed else "none"
        raise RouteError(
            "PrefixNotAllowed",
            f"namespace {route.namespace} may not route {route.prefix}: the cluster admin allowed it "
            f"{granted} (operator value routing.allowedPrefixes)",
        )

    def is_shared(self, cloud_map_namespace: str, service: str) -> bool:
        return f"{cloud_map_namespace}/{service}" in self.shared_services

    def owned_targets(self, route: Route, targets: Sequence[Target]) -> tuple[list[Target], int]:
        """The targets the route may call, and how many were skipped as another namespace's."""
        if self.unrestricted or self.is_shared(route.cloud_map_namespace, route.cloud_map_service):
            return list(targets), 0
        owned = [t for t in targets if t.attributes.get(NAMESPACE_ATTRIBUTE) == route.namespace]
        return owned, len(targets) - len(owned)


class HealthGateRefused(Exception):
    """A health gate URL (or the address it resolves to) is outside the admin's allow-list."""


Resolver = Callable[[str, int], Iterable[str]]
"""(host, port) → the IP addresses to try, in order."""


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclasses.dataclass(frozen=True)
class HealthGatePolicy:
    """Which health gate URLs the operator will fetch (from `OperatorSettings`)."""

    allowed_hosts: tuple[str, ...] = DEFAULT_HEALTH_GATE_HOSTS
    """Host name patterns (shell-style, e.g. "*.svc"); an IP literal must be listed as it is."""
    allow_loopback: bool = False
    """Loopback addresses are refused unless this is set (local test stacks only)."""

    def check_url(self, url: str) -> tuple[str, str, int]:
        """(scheme, host, port) of an allowed URL; raise HealthGateRefused. No DNS: see `check_address`."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise HealthGateRefused(f"health gate {url!r} is not an http(s) URL with a host")
        if parsed.username or parsed.password:
            raise HealthGateRefused("health gate URLs must not carry credentials")
        host = parsed.hostname.rstrip(".").lower()
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError:
            raise HealthGateRefused(f"health gate {url!r} has a bad port") from None
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            self.check_address(str(literal))
        if not any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in self.allowed_hosts):
            raise HealthGateRefused(
                f"health gate host {host} is not on the operator's allow-list "
                f"({', '.join(self.allowed_hosts) or 'empty'}; value healthGate.allowedHosts)"
            )
        return parsed.scheme, host, port

    def check_address(self, address: str) -> None:
        """Raise HealthGateRefused for addresses no health gate may reach."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        mapped = getattr(ip, "ipv4_mapped", None)
        if mapped is not None:
            ip = mapped
        if ip in _METADATA_ADDRESSES or ip.is_link_local:
            raise HealthGateRefused(f"health gate address {ip} is link-local (instance metadata); refused")
        if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
            raise HealthGateRefused(f"health gate address {ip} is not a unicast address; refused")
        if ip.is_loopback and not self.allow_loopback:
            raise HealthGateRefused(f"health gate address {ip} is loopback; refused")

    def check_route(self, route: Route) -> None:
        """Raise RouteError(HealthGateNotAllowed) when the route's health gate URL is refused outright."""
        gate = route.rollout.health_gate if route.rollout is not None else None
        if gate is None:
            return
        try:
            self.check_url(gate)
        except HealthGateRefused as refused:
            raise RouteError("HealthGateNotAllowed", str(refused)) from None

    def probe(self, url: str, *, timeout: float = 2.0, resolve: Resolver = _resolve) -> bool:
        """True if `url` answers 2xx within `timeout`; raise HealthGateRefused when it may not be fetched.

        Blocking: run it in a thread. The host is resolved here, every address is checked, and the
        connection goes to a checked address (the Host header and TLS server name stay the URL's host).
        """
        scheme, host, port = self.check_url(url)
        try:
            addresses = list(resolve(host, port))
        except OSError:
            return False
        for address in addresses:
            self.check_address(address)
        parsed = urllib.parse.urlsplit(url)
        path = parsed.path or "/"
        if parsed.query:
            path += "?" + parsed.query
        for address in addresses:
            connection = _pinned_connection(scheme, host, port, address, timeout)
            try:
                connection.request("GET", path, headers={"Host": parsed.netloc.rsplit("@", 1)[-1]})
                response = connection.getresponse()
                return 200 <= response.status < 300
            except (OSError, http.client.HTTPException, ValueError):
                continue
            finally:
                connection.close()
        return False


def _pinned_connection(
    scheme: str, host: str, port: int, address: str, timeout: float
) -> http.client.HTTPConnection:
    """An HTTP(S) connection to `address` that presents `host` (Host header, SNI, certificate check)."""

    if scheme == "https":
        context = ssl.create_default_context()

        class _Https(http.client.HTTPSConnection):
            def connect(self) -> None:
                sock = socket.create_connection((address, port), timeout)
                self.sock = context.wrap_socket(sock, server_hostname=host)

        return _Https(host, port, timeout=timeout, context=context)

    class _Http(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.create_connection((address, port), timeout)

    return _Http(host, port, timeout=timeout)


def routing_from_settings(settings: OperatorSettings) -> RoutingPolicy:
    return RoutingPolicy(
        unrestricted=settings.routing_unrestricted,
        allowed_prefixes=dict(settings.allowed_prefixes),
        shared_services=settings.shared_services,
    )


def health_gates_from_settings(settings: OperatorSettings) -> HealthGatePolicy:
    return HealthGatePolicy(
        allowed_hosts=settings.health_gate_hosts, allow_loopback=settings.health_gate_allow_loopback
    )


@dataclasses.dataclass(frozen=True)
class Admission:
    """Everything a ConfigRoute must pass before it is indexed: its own validation, then the admin's rules."""

    routing: RoutingPolicy
    health_gates: HealthGatePolicy

    def admit(self, obj: Mapping[str, Any]) -> Route:
        """The route, or RouteError naming the first rule it breaks."""
        route = route_from_object(obj)
        self.routing.check_route(route)
        self.health_gates.check_route(route)
        return route


def admission_from_settings(settings: OperatorSettings) -> Admission:
    return Admission(
        routing=routing_from_settings(settings), health_gates=health_gates_from_settings(settings)
    )
