"""The documented layout: which file and key becomes which parameter, and what the tree refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from configctl.layout import Source, load, normalize_prefix
from configctl.model import DesiredParameter
from configctl.validation import validate

PREFIX = "/config-service/"


def write(root: Path, relative: str, text: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def by_name(parameters: tuple[DesiredParameter, ...]) -> dict[str, DesiredParameter]:
    return {p.name: p for p in parameters}


def problems_of(root: Path, prefix: str = PREFIX, environ: dict[str, str] | None = None) -> list[str]:
    source = Source(root, prefix)
    loaded = load(source, environ=environ or {})
    return [str(p) for p in (*loaded.problems, *validate(loaded.parameters, scope=source.scope))]


def test_tenant_file_keys_map_under_the_prefix(tmp_path: Path) -> None:
    write(tmp_path, "acme/orders.yaml", "db_url: postgres://x\nlimits/max: 5\n")
    loaded = load(Source(tmp_path, PREFIX), environ={})
    assert loaded.problems == ()
    params = by_name(loaded.parameters)
    assert set(params) == {"/config-service/acme/orders/db_url", "/config-service/acme/orders/limits/max"}
    assert params["/config-service/acme/orders/db_url"].value == "postgres://x"
    assert params["/config-service/acme/orders/db_url"].source == "acme/orders.yaml:db_url"


def test_scalars_keep_the_text_written(tmp_path: Path) -> None:
    write(tmp_path, "a/b.yaml", "version: 1.10\nflag: on\nday: 2026-01-01\ncount: 007\n")
    params = by_name(load(Source(tmp_path, PREFIX), environ={}).parameters)
    assert [params[f"/config-service/a/b/{k}"].value for k in ("version", "flag", "day", "count")] == [
        "1.10",
        "on",
        "2026-01-01",
        "007",
    ]


def test_lists_become_string_lists_and_mappings_carry_metadata(tmp_path: Path) -> None:
    write(
        tmp_path,
        "acme/orders.yaml",
        "currencies: [EUR, USD]\n"
        "password:\n  type: SecureString\n  value: hunter2\n  kmsKeyId: alias/orders\n"
        "big:\n  value: x\n  tier: Advanced\n  description: d\n  tags: {team: payments}\n",
    )
    params = by_name(load(Source(tmp_path, PREFIX), environ={}).parameters)
    currencies = params["/config-service/acme/orders/currencies"]
    assert (currencies.type, currencies.value) == ("StringList", "EUR,USD")
    password = params["/config-service/acme/orders/password"]
    assert (password.type, password.kms_key_id, password.secret) == ("SecureString", "alias/orders", True)
    big = params["/config-service/acme/orders/big"]
    assert (big.tier, big.description, big.tags) == ("Advanced", "d", (("team", "payments"),))


def test_json_files_are_read_like_yaml(tmp_path: Path) -> None:
    write(tmp_path, "acme/billing.json", '{"rate": 1.50, "enabled": true}')
    params = by_name(load(Source(tmp_path, PREFIX), environ={}).parameters)
    assert params["/config-service/acme/billing/rate"].value == "1.50"
    assert params["/config-service/acme/billing/enabled"].value == "true"


def test_value_from_env_reads_the_pipeline_secret(tmp_path: Path) -> None:
    write(tmp_path, "acme/orders.yaml", "pw:\n  type: SecureString\n  valueFrom: {env: PW}\n")
    params = by_name(load(Source(tmp_path, PREFIX), environ={"PW": "from-env"}).parameters)
    assert params["/config-service/acme/orders/pw"].value == "from-env"
    assert problems_of(tmp_path) == ["acme/orders.yaml:pw: environment variable PW is not set"]


def test_a_single_file_maps_under_prefix_and_its_stem(tmp_path: Path) -> None:
    path = write(tmp_path, "orders.yaml", "db_url: x\n")
    source = Source(path, "/config-service/acme/")
    assert source.scope == "/config-service/acme/orders/"
    assert [p.name for p in load(source, environ={}).parameters] == ["/config-service/acme/orders/db_url"]


def test_hidden_and_other_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, ".git/config.yaml", "x: 1\n")
    write(tmp_path, "README.md", "# docs\n")
    write(tmp_path, "acme/orders.yml", "x: 1\n")
    assert [p.name for p in load(Source(tmp_path, PREFIX), environ={}).parameters] == [
        "/config-service/acme/orders/x"
    ]


def test_prefix_is_normalized() -> None:
    assert normalize_prefix("/config-service") == "/config-service/"
    assert normalize_prefix("/config-service/") == "/config-service/"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: 2\na: 3\n", "duplicate key 'a' on line 3 (first on line 1)"),
        ("a: [1, 2\n", "invalid YAML"),
        ("- just\n- a list\n", "a config file must hold one mapping"),
        ("a:\n", "empty value"),
        ("a:\n  value: x\n  colour: red\n", "unknown field(s) colour"),
        ("a:\n  type: Number\n  value: 1\n", "type must be one of String, StringList, SecureString"),
        ("a: [x, 'y,z']\n", "StringList items cannot contain commas"),
        ("a:\n  value: x\n  kmsKeyId: alias/k\n", "kmsKeyId is a string and only applies to SecureString"),
    ],
)
def test_bad_documents_are_reported_with_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, "acme/orders.yaml", text)
    problems = problems_of(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("acme/orders.yaml")
    assert expected in problems[0]


def test_duplicate_keys_in_json_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "acme/orders.json", '{"a": "1", "a": "2"}')
    assert problems_of(tmp_path) == ["acme/orders.json: duplicate key 'a'"]


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    write(tmp_path, "acme/orders.yaml", b"a: \xff\xfe\n")
    os.symlink(tmp_path / "acme" / "missing.yaml", tmp_path / "acme" / "dangling.yaml")
    assert problems_of(tmp_path) == [
        "acme/dangling.yaml: cannot read file: dangling symlink",
        "acme/orders.yaml: not UTF-8 text (byte 3)",
    ]


def test_symlinks_out_of_the_tree_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "secrets.yaml", "stolen: x\n")
    tree = tmp_path / "tree"
    write(tree, "acme/orders.yaml", "a: 1\n")
    os.symlink(outside / "secrets.yaml", tree / "acme" / "evil.yaml")
    os.symlink(outside, tree / "linked-dir")
    loaded = load(Source(tree, PREFIX), environ={})
    assert [p.name for p in loaded.parameters] == ["/config-service/acme/orders/a"]
    assert sorted(str(p) for p in loaded.problems) == [
        "acme/evil.yaml: symlink points outside the config tree; refused",
        "linked-dir: symlink points outside the config tree; refused",
    ]


def test_symlinks_inside_the_tree_are_followed(tmp_path: Path) -> None:
    write(tmp_path, "acme/orders.yaml", "a: 1\n")
    os.symlink(tmp_path / "acme" / "orders.yaml", tmp_path / "acme" / "orders-copy.yaml")
    names = sorted(p.name for p in load(Source(tmp_path, PREFIX), environ={}).parameters)
    assert names == ["/config-service/acme/orders-copy/a", "/config-service/acme/orders/a"]


@pytest.mark.parametrize("key", ["../../other/x", "../x", "a/./b", "a/../../../x"])
def test_keys_that_traverse_out_of_the_prefix_are_refused(tmp_path: Path, key: str) -> None:
    write(tmp_path, "acme/orders.yaml", f"'{key}': v\n")
    problems = problems_of(tmp_path)
    assert any("path traversal" in p for p in problems), problems


def test_a_name_resolving_outside_the_prefix_says_so(tmp_path: Path) -> None:
    write(tmp_path, "acme/orders.yaml", "'../../../other/x': v\n")
    problems = problems_of(tmp_path)
    assert any("resolves outside the prefix /config-service/" in p for p in problems), problems


def test_the_same_name_from_two_files_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "acme/orders.yaml", "db/url: a\n")
    write(tmp_path, "acme/orders/db.yaml", "url: b\n")
    problems = problems_of(tmp_path)
    assert problems == [
        "acme/orders.yaml:db/url: parameter /config-service/acme/orders/db/url is also defined by "
        "acme/orders/db.yaml:url"
    ]
