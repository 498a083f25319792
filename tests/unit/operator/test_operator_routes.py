"""Routes claim parameters by prefix and scopePattern, extract the scope, and template Cloud Map queries."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from configrefresh_api.matching import MAX_PARAMETER_NAME_LENGTH
from refresh_operator.fanout.mapping import effective_payload
from refresh_operator.routes import RouteError, RouteIndex, route_from_object


def route_object(name: str = "orders", namespace: str = "team-a", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "parameterPrefix": "/config-service/",
        "discovery": {"cloudMap": {"namespace": "apps.local", "service": "config-service"}},
    }
    body.update(spec)
    return {"metadata": {"name": name, "namespace": namespace, "uid": "u-1", "generation": 3}, "spec": body}


def test_defaults_are_those_of_the_crd() -> None:
    route = route_from_object(route_object())
    assert route.refresh.timeout_seconds == 2
    assert route.refresh.max_concurrency == 64
    assert route.refresh.max_attempts == 3
    assert route.refresh.deadline_seconds == 300
    assert route.refresh.payload == "value"
    assert route.refresh.auth_type == "none"
    assert not route.refresh.tls_enabled
    assert route.generation == 3


def test_scope_comes_from_the_named_groups() -> None:
    route = route_from_object(
        route_object(
            scopePattern=r"^/config-service/(?P<tenant>[^/]+)/(?P<app>[^/]+)/",
            discovery={
                "cloudMap": {
                    "namespace": "apps.local",
                    "service": "config-service",
                    "queryParameters": {"tenant": "{tenant}", "selector": "{tenant}-{app}", "tier": "gold"},
                }
            },
        )
    )
    scope = route.scope_of("/config-service/acme/orders/db_url")
    assert scope == {"tenant": "acme", "app": "orders"}
    assert route.query_for(scope) == {"tenant": "acme", "selector": "acme-orders", "tier": "gold"}


def test_a_name_outside_the_prefix_or_pattern_is_not_claimed() -> None:
    route = route_from_object(route_object(scopePattern=r"^/config-service/(?P<tenant>[a-z]+)/"))
    assert route.scope_of("/other/acme/x") is None
    assert route.scope_of("/config-service/ACME/x") is None
    assert route.scope_of("/config-service/acme/x") == {"tenant": "acme"}


def test_without_a_pattern_the_scope_is_empty() -> None:
    assert route_from_object(route_object()).scope_of("/config-service/anything") == {}


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"parameterPrefix": "/"}, "InvalidPrefix"),
        ({"parameterPrefix": "config-service/"}, "InvalidPrefix"),
        ({"scopePattern": "(?P<tenant>[^/]+"}, "InvalidScopePattern"),
        ({"scopePattern": "a" * 513}, "InvalidScopePattern"),
        ({"discovery": {"cloudMap": {"namespace": "apps.local"}}}, "InvalidDiscovery"),
        (
            {
                "scopePattern": "(?P<tenant>[^/]+)",
                "discovery": {
                    "cloudMap": {"namespace": "n", "service": "s", "queryParameters": {"app": "{app}"}}
                },
            },
            "InvalidQueryParameters",
        ),
    ],
)
def test_an_unusable_route_is_refused_with_a_reason(spec: dict[str, Any], reason: str) -> None:
    with pytest.raises(RouteError) as caught:
        route_from_object(route_object(**spec))
    assert caught.value.reason == reason


BACKTRACKING = r"^/config-service/(?P<tenant>(q+q+)+)/x$"


def test_the_backtracking_pattern_of_issue_17_matches_a_crafted_10_kb_name_in_linear_time() -> None:
    """Python's re takes 0.18 s for 22 q's and doubles per character; RE2 does 10 kB in well under 10 ms."""
    route = route_from_object(route_object(scopePattern=BACKTRACKING))
    crafted = "/config-service/" + "q" * 10_000 + "!"
    assert route.scope_pattern is not None
    timings = []
    for _ in range(5):  # the best of five: a busy machine may preempt any single run
        started = time.perf_counter()
        assert route.scope_pattern.search(crafted) is None
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.010, f"matching took {min(timings) * 1000:.2f} ms at best"
    assert route.scope_of("/config-service/qqqq/x") == {"tenant": "qqqq"}


def test_a_name_longer_than_parameter_stores_limit_is_never_claimed() -> None:
    route = route_from_object(route_object())
    assert route.scope_of("/config-service/" + "a" * MAX_PARAMETER_NAME_LENGTH) is None
    assert route.scope_of("/config-service/" + "a" * 100) == {}


@pytest.mark.parametrize("pattern", [r"^/config-service/(a)\1", r"^/config-service/(?=x)", r"(?<!a)b"])
def test_a_pattern_re2_cannot_compile_is_refused_with_a_reason(pattern: str) -> None:
    with pytest.raises(RouteError) as caught:
        route_from_object(route_object(scopePattern=pattern))
    assert caught.value.reason == "InvalidScopePattern"
    assert "RE2" in str(caught.value)


@pytest.mark.parametrize("auth", ["bearerToken", "serviceAccountToken"])
def test_a_token_over_plaintext_is_refused_with_the_two_ways_through(auth: str) -> None:
    with pytest.raises(RouteError) as caught:
        route_from_object(route_object(refresh={"auth": {"type": auth}}))
    assert caught.value.reason == "PlaintextCredentials"
    assert "tls.enabled" in str(caught.value)
    assert "insecureAllowPlaintext" in str(caught.value)


def test_a_token_goes_over_tls_or_with_the_explicit_opt_out() -> None:
    over_tls = route_from_object(
        route_object(refresh={"auth": {"type": "serviceAccountToken"}, "tls": {"enabled": True}})
    )
    assert over_tls.refresh.plaintext_allowed
    opted_out = route_from_object(
        route_object(refresh={"auth": {"type": "bearerToken"}, "insecureAllowPlaintext": True})
    )
    assert opted_out.refresh.plaintext_allowed


def test_secure_strings_on_a_plaintext_route_become_invalidations() -> None:
    plain = route_from_object(route_object())
    assert plain.refresh.secure_strings_invalidated
    assert effective_payload(plain, "SecureString") == "invalidate"
    assert effective_payload(plain, "String") == "value"
    tls = route_from_object(route_object(refresh={"tls": {"enabled": True}}))
    assert effective_payload(tls, "SecureString") == "value"


def test_the_audience_is_per_service_unless_the_route_names_one() -> None:
    route = route_from_object(route_object())
    assert route.refresh.audience == "configrefresh.io/apps.local/config-service"
    named = route_from_object(
        route_object(
            refresh={"auth": {"type": "serviceAccountToken", "audience": "mine"}, "tls": {"enabled": True}}
        )
    )
    assert named.refresh.audience == "mine"


def test_a_ca_bundle_is_decoded_and_needs_tls() -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    bundle = base64.b64encode(pem).decode()
    route = route_from_object(route_object(refresh={"tls": {"enabled": True, "caBundle": bundle}}))
    assert route.refresh.ca_bundle == pem
    for tls in ({"caBundle": bundle}, {"enabled": True, "caBundle": "not base64!"}):
        with pytest.raises(RouteError) as caught:
            route_from_object(route_object(refresh={"tls": tls}))
        assert caught.value.reason == "InvalidCABundle"


def test_the_index_matches_every_claiming_route_longest_prefix_first() -> None:
    index = RouteIndex()
    index.upsert(route_from_object(route_object("broad", parameterPrefix="/config-service/")))
    index.upsert(route_from_object(route_object("narrow", parameterPrefix="/config-service/acme/")))
    index.upsert(route_from_object(route_object("other", parameterPrefix="/billing/")))
    names = [route.name for route, _ in index.match("/config-service/acme/db")]
    assert names == ["narrow", "broad"]
    assert [route.name for route, _ in index.match("/config-service/zeta/db")] == ["broad"]
    assert index.match("/elsewhere/db") == []
    index.remove("team-a", "narrow")
    assert [route.name for route, _ in index.match("/config-service/acme/db")] == ["broad"]


def test_an_updated_route_replaces_the_old_one() -> None:
    index = RouteIndex()
    index.upsert(route_from_object(route_object("r", parameterPrefix="/a/")))
    index.upsert(route_from_object(route_object("r", parameterPrefix="/b/")))
    assert index.match("/a/x") == []
    assert len(index.match("/b/x")) == 1
    assert len(index) == 1
