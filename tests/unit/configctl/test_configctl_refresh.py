"""The manual ConfigRefresh configctl creates, and the label selectors status uses."""

from __future__ import annotations

import datetime
from typing import Any

from configctl.refresh import refresh_body
from configrefresh_api.labels import refresh_selector
from configrefresh_api.matching import route_scope
from configrefresh_api.naming import parameter_hash

NAME = "/config-service/acme/orders/db_url"
NOW = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)


def test_manual_refresh_carries_the_labels_the_operator_and_wait_use() -> None:
    body = refresh_body(
        namespace="team-a",
        route="orders",
        scope={"tenant": "acme"},
        name=NAME,
        parameter={"Version": 7, "Type": "SecureString", "LastModifiedDate": NOW},
        now=NOW,
    )
    assert body["metadata"]["labels"] == {
        "configrefresh.io/route": "orders",
        "configrefresh.io/parameter-hash": parameter_hash(NAME),
        "configrefresh.io/version": "7",
    }
    assert body["metadata"]["annotations"] == {"configrefresh.io/parameter-name": NAME}
    assert body["spec"]["parameter"] == {
        "name": NAME,
        "version": 7,
        "operation": "Upsert",
        "type": "SecureString",
        "lastModified": "2026-11-26T10:00:00.000000Z",
    }
    assert body["spec"]["source"]["trigger"] == "manual"
    assert body["spec"]["scope"] == {"tenant": "acme"}
    assert len(body["metadata"]["name"]) <= 63


def test_routes_claim_by_prefix_and_scope_pattern() -> None:
    route = {
        "metadata": {"name": "orders"},
        "spec": {
            "parameterPrefix": "/config-service/",
            "scopePattern": r"^/config-service/(?P<tenant>[^/]+)/orders/",
        },
    }
    assert route_scope(route, NAME) == {"tenant": "acme"}
    assert route_scope(route, "/config-service/acme/billing/x") is None
    assert route_scope(route, "/other/acme/orders/x") is None


def test_status_filters_by_parameter_hash_and_route() -> None:
    assert refresh_selector() == ""
    assert refresh_selector(parameter_name=NAME, route="orders") == (
        f"configrefresh.io/parameter-hash={parameter_hash(NAME)},configrefresh.io/route=orders"
    )


def test_route_scope_matches_a_backtracking_pattern_in_linear_time_and_skips_refused_routes() -> None:
    route: dict[str, Any] = {
        "metadata": {"generation": 1},
        "spec": {"parameterPrefix": "/config-service/", "scopePattern": "^/config-service/(?P<t>(q+q+)+)/x$"},
    }
    assert route_scope(route, "/config-service/" + "q" * 2000 + "!") is None  # instant with RE2
    assert route_scope(route, "/config-service/qq/x") == {"t": "qq"}
    route["status"] = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "False", "reason": "PrefixNotAllowed"}],
    }
    assert route_scope(route, "/config-service/qq/x") is None  # the operator routes nothing through it
