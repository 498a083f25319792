"""Routes claim parameters by prefix and scopePattern, extract the scope, and template Cloud Map queries."""

from __future__ import annotations

from typing import Any

import pytest

from refresh_operator.routes import RouteError, RouteIndex, route_from_object, smoke_test_pattern


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


def test_a_catastrophically_backtracking_pattern_fails_the_smoke_test() -> None:
    with pytest.raises(RouteError) as caught:
        smoke_test_pattern(r"^(a+)+$", budget=1.0)
    assert caught.value.reason == "UnsafeScopePattern"


def test_a_pattern_that_backtracks_only_under_its_prefix_fails_the_smoke_test() -> None:
    prefix = "/config-service/hostile/"
    with pytest.raises(RouteError) as caught:
        smoke_test_pattern(r"^/config-service/hostile/(?P<tenant>(a+)+)$", prefix=prefix, budget=2.0)
    assert caught.value.reason == "UnsafeScopePattern"


def test_an_ordinary_pattern_passes_the_smoke_test() -> None:
    smoke_test_pattern(r"^/config-service/(?P<tenant>[^/]+)/(?P<app>[^/]+)/", budget=10.0)


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
