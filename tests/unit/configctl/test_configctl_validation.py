"""Parameter Store's naming and size rules, checked before anything is written."""

from __future__ import annotations

import pytest

from configctl.model import DesiredParameter, Tier
from configctl.validation import name_problems, prefix_problems, validate


def param(name: str, value: str = "v", *, tier: Tier | None = None, secret: bool = False) -> DesiredParameter:
    return DesiredParameter(name, value, "SecureString" if secret else "String", "f.yaml:k", tier=tier)


@pytest.mark.parametrize(
    "name",
    ["/config-service/acme/orders/db_url", "/config-service/a.b-c_d/E9", "/" + "/".join(["x"] * 15)],
)
def test_valid_names_pass(name: str) -> None:
    assert name_problems(name) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("/config-service/acme/db url", "name may only use letters, digits and _ . - / (found ' ')"),
        ("/config-service/acme/ünïcode", "name may only use letters"),
        ("/config-service/acme/a:b", "found ':'"),
        ("/" + "/".join(["x"] * 16), "name has 16 levels; Parameter Store allows at most 15"),
        ("/config-service/" + "x" * 1000, "characters long; the maximum is 1011"),
        ("/aws/reserved", "names cannot start with 'aws' or 'ssm'"),
        ("/SSMthing/x", "names cannot start with 'aws' or 'ssm'"),
        ("/config-service//x", "empty level"),
        ("/config-service/../x", "path traversal"),
    ],
)
def test_names_parameter_store_would_reject(name: str, expected: str) -> None:
    assert any(expected in p for p in name_problems(name)), name_problems(name)


def test_prefix_must_be_absolute_and_not_the_root() -> None:
    assert prefix_problems("/config-service/") == []
    assert prefix_problems("config-service/") == [
        "the prefix must start with '/' (for example /config-service/)"
    ]
    assert "'/' is refused" in prefix_problems("/")[0]


def test_standard_tier_allows_4_kb() -> None:
    assert validate([param("/p/a", "x" * 4096)], scope="/p/") == []
    [problem] = validate([param("/p/a", "x" * 4097)], scope="/p/")
    assert (
        problem.message
        == "value is 4097 bytes; the Standard tier allows 4096; set `tier: Advanced` for up to 8 KB"
    )


def test_advanced_tier_allows_8_kb_counted_in_bytes() -> None:
    assert validate([param("/p/a", "x" * 8192, tier="Advanced")], scope="/p/") == []
    [problem] = validate([param("/p/a", "é" * 4097, tier="Advanced")], scope="/p/")
    assert problem.message == "value is 8194 bytes; the Advanced tier allows 8192"


def test_oversized_secret_is_reported_without_its_value() -> None:
    [problem] = validate([param("/p/a", "S3CRET" * 1000, secret=True)], scope="/p/")
    assert "S3CRET" not in str(problem)


def test_names_outside_the_scope_are_refused() -> None:
    [problem] = validate([param("/other/a")], scope="/config-service/")
    assert problem.message == "name /other/a resolves outside the prefix /config-service/; refused"
