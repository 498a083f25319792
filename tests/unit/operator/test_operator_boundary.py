"""The boundary between namespaces: prefix allowances, instance ownership, and the health-gate allow-list."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from refresh_operator.boundary import (
    Admission,
    HealthGatePolicy,
    HealthGateRefused,
    RoutingPolicy,
    prefix_within,
)
from refresh_operator.fanout import Target
from refresh_operator.handlers import channel_condition
from refresh_operator.routes import RouteError, route_from_object
from refresh_operator.settings import SettingsError, load_settings


def route(namespace: str = "team-b", prefix: str = "/config-service/team-b/", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "r", "namespace": namespace},
        "spec": {
            "parameterPrefix": prefix,
            "discovery": {"cloudMap": {"namespace": "apps.local", "service": "config-service"}},
            **spec,
        },
    }


ALLOWANCES = {"team-a": ("/config-service/team-a/",), "team-b": ("/config-service/team-b",)}


@pytest.mark.parametrize(
    ("prefix", "allowed", "within"),
    [
        ("/team-a/", "/team-a/", True),
        ("/team-a/x/", "/team-a", True),
        ("/team-a", "/team-a", True),
        ("/team-ab/", "/team-a", False),
        ("/team-a", "/team-a/", False),
        ("/", "/team-a/", False),
    ],
)
def test_a_prefix_is_within_an_allowance_by_whole_path_segments(
    prefix: str, allowed: str, within: bool
) -> None:
    assert prefix_within(prefix, allowed) is within


def test_a_route_claiming_another_namespaces_prefix_is_refused() -> None:
    policy = RoutingPolicy(allowed_prefixes=ALLOWANCES)
    policy.check_route(route_from_object(route()))
    with pytest.raises(RouteError) as caught:
        policy.check_route(route_from_object(route(prefix="/config-service/team-a/")))
    assert caught.value.reason == "PrefixNotAllowed"
    assert "routing.allowedPrefixes" in str(caught.value)


def test_by_default_no_namespace_may_route_anything_and_unrestricted_lifts_it() -> None:
    with pytest.raises(RouteError):
        RoutingPolicy().check_route(route_from_object(route()))
    RoutingPolicy(unrestricted=True).check_route(route_from_object(route(prefix="/anything/")))
    RoutingPolicy(allowed_prefixes={"*": ("/shared/",)}).check_route(
        route_from_object(route(prefix="/shared/x/"))
    )


def test_discovery_keeps_only_the_instances_the_routes_namespace_owns_unless_shared() -> None:
    mine = Target("team-b.p1", "10.0.0.1:1", {"k8s-namespace": "team-b"})
    theirs = Target("team-a.p1", "10.0.0.2:1", {"k8s-namespace": "team-a"})
    unmarked = Target("i-3", "10.0.0.3:1", {})
    the_route = route_from_object(route())
    owned, skipped = RoutingPolicy().owned_targets(the_route, [mine, theirs, unmarked])
    assert (owned, skipped) == ([mine], 2)
    shared = RoutingPolicy(shared_services=frozenset({"apps.local/config-service"}))
    assert shared.owned_targets(the_route, [mine, theirs])[0] == [mine, theirs]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://127.0.0.1:8080/healthz",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://metadata.google.internal/",
        "http://example.com/",
        "file:///etc/passwd",
        "http://user:pw@canary.team-b.svc/",
    ],
)
def test_health_gate_urls_outside_the_allow_list_are_refused(url: str) -> None:
    with pytest.raises(HealthGateRefused):
        HealthGatePolicy().check_url(url)


def test_in_cluster_services_are_allowed_by_default() -> None:
    assert HealthGatePolicy().check_url("http://canary.team-b.svc:8080/ok")[1] == "canary.team-b.svc"
    assert HealthGatePolicy().check_url("https://canary.team-b.svc.cluster.local/ok")[2] == 443


def test_link_local_is_refused_even_when_the_admin_lists_it() -> None:
    policy = HealthGatePolicy(allowed_hosts=("*",), allow_loopback=True)
    with pytest.raises(HealthGateRefused, match="link-local"):
        policy.check_url("http://169.254.169.254/")


def test_a_name_that_resolves_to_the_metadata_address_is_refused_at_request_time() -> None:
    """DNS rebinding: the host passes the allow-list, its answer does not."""
    policy = HealthGatePolicy()
    with pytest.raises(HealthGateRefused, match="link-local"):
        policy.probe("http://canary.team-b.svc/", resolve=lambda host, port: ["169.254.169.254"])
    with pytest.raises(HealthGateRefused, match="loopback"):
        policy.probe("http://canary.team-b.svc/", resolve=lambda host, port: ["10.0.0.9", "127.0.0.1"])


@pytest.fixture
def health_server() -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(str(self.headers.get("Host")))
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_the_probe_connects_to_the_checked_address_and_sends_the_urls_host(
    health_server: tuple[int, list[str]],
) -> None:
    port, seen = health_server
    policy = HealthGatePolicy(allow_loopback=True)
    pinned = lambda host, port: ["127.0.0.1"]  # noqa: E731 - the in-cluster name "resolves" to the test server
    assert policy.probe(f"http://canary.team-b.svc:{port}/ok", resolve=pinned)
    assert not policy.probe(f"http://canary.team-b.svc:{port}/down", resolve=pinned)
    assert seen == [f"canary.team-b.svc:{port}"] * 2


def test_admission_refuses_a_route_whose_health_gate_is_not_allowed() -> None:
    admission = Admission(routing=RoutingPolicy(unrestricted=True), health_gates=HealthGatePolicy())
    spec: dict[str, Any] = {
        "rollout": {"waves": ["1"], "healthGate": {"url": "http://169.254.169.254/latest/"}}
    }
    with pytest.raises(RouteError) as caught:
        admission.admit(route(**spec))
    assert caught.value.reason == "HealthGateNotAllowed"


def test_the_settings_carry_the_admins_allowances() -> None:
    base = {"CONFIG_REFRESH_QUEUE_URL": "http://127.0.0.1/q", "AWS_REGION": "us-east-1"}
    settings = load_settings(
        {
            **base,
            "CONFIG_REFRESH_ALLOWED_PREFIXES": '{"team-a": ["/config-service/team-a/"]}',
            "CONFIG_REFRESH_SHARED_SERVICES": "apps.local/edge, apps.local/proxy",
            "CONFIG_REFRESH_HEALTH_GATE_HOSTS": "*.svc",
        }
    )
    assert settings.allowed_prefixes == {"team-a": ("/config-service/team-a/",)}
    assert settings.shared_services == frozenset({"apps.local/edge", "apps.local/proxy"})
    assert settings.health_gate_hosts == ("*.svc",)
    assert not settings.routing_unrestricted
    defaults = load_settings(base)
    assert defaults.allowed_prefixes == {}
    assert defaults.health_gate_hosts == ("*.svc", "*.svc.cluster.local")
    for key, value in (
        ("CONFIG_REFRESH_ALLOWED_PREFIXES", '{"team-a": ["/"]}'),
        ("CONFIG_REFRESH_ALLOWED_PREFIXES", "[1]"),
        ("CONFIG_REFRESH_SHARED_SERVICES", "no-slash"),
    ):
        with pytest.raises(SettingsError, match=key):
            load_settings({**base, key: value})


@pytest.mark.parametrize(
    ("refresh", "status", "reason"),
    [
        ({"tls": {"enabled": True}}, "True", "TLS"),
        ({}, "False", "SecureStringsAsInvalidate"),
        ({"payload": "invalidate"}, "False", "Plaintext"),
        ({"insecureAllowPlaintext": True}, "False", "InsecureAllowPlaintext"),
    ],
)
def test_the_secure_channel_condition_says_what_travels_in_clear(
    refresh: dict[str, Any], status: str, reason: str
) -> None:
    condition = channel_condition(route(refresh=refresh), generation=2)
    assert (condition["type"], condition["status"], condition["reason"]) == ("SecureChannel", status, reason)
