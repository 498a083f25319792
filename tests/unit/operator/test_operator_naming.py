"""ConfigRefresh names are deterministic DNS-1123 labels that separate versions across delete-and-recreate."""

from __future__ import annotations

import datetime
import re

import pytest

from configrefresh_api.naming import MAX_LENGTH, refresh_name

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
T0 = datetime.datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=datetime.UTC)


def test_the_same_change_always_gets_the_same_name() -> None:
    first = refresh_name(
        route="orders", parameter_name="/config-service/acme/db", version=7, last_modified=T0
    )
    again = refresh_name(
        route="orders",
        parameter_name="/config-service/acme/db",
        version=7,
        last_modified=T0.astimezone(datetime.timezone(datetime.timedelta(hours=5))),
    )
    assert first == again
    assert first.startswith("orders-")
    assert "-v7-" in first


def test_version_one_after_delete_and_recreate_is_a_different_object() -> None:
    before = refresh_name(route="orders", parameter_name="/p", version=1, last_modified=T0)
    after = refresh_name(
        route="orders", parameter_name="/p", version=1, last_modified=T0 + datetime.timedelta(seconds=30)
    )
    assert before != after


def test_different_parameters_and_routes_get_different_names() -> None:
    names = {
        refresh_name(route=route, parameter_name=name, version=1, last_modified=T0)
        for route in ("orders", "billing")
        for name in ("/config-service/a", "/config-service/b", "/config-service/A")
    }
    assert len(names) == 6


@pytest.mark.parametrize(
    "route",
    ["orders", "a" * 63, "x" * 253, "Route.With.Dots", "team-a.orders.production.eu-west-1.example.com"],
)
@pytest.mark.parametrize("version", [1, 999_999_999_999])
def test_every_name_is_a_dns_label_of_at_most_63_characters(route: str, version: int) -> None:
    name = refresh_name(
        route=route, parameter_name="/config-service/" + "x" * 1000, version=version, last_modified=T0
    )
    assert len(name) <= MAX_LENGTH
    assert DNS_1123_LABEL.match(name), name


def test_two_long_routes_with_a_common_prefix_do_not_collide() -> None:
    common = "r" * 70
    first = refresh_name(route=common + "-one", parameter_name="/p", version=1, last_modified=T0)
    second = refresh_name(route=common + "-two", parameter_name="/p", version=1, last_modified=T0)
    assert first != second
