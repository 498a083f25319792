"""config-service's self-registration marks the instance as owned by its pod's namespace."""

from __future__ import annotations

from config_service.registration import owned_attributes


def test_the_pods_namespace_is_registered_as_the_owner() -> None:
    assert owned_attributes({"tenant": "acme"}, "team-a") == {"tenant": "acme", "k8s-namespace": "team-a"}


def test_without_a_namespace_nothing_is_claimed() -> None:
    assert owned_attributes({"tenant": "acme"}, None) == {"tenant": "acme"}
    assert owned_attributes({}, "") == {}
