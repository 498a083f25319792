"""Security 14 (property-based): no input tree makes `configctl apply` write outside its prefix.

tests/integration/test_configctl_apply.py checks one example of each refusal and its message. Here
hypothesis builds hostile trees: keys and nested keys made of path pieces ('..', '.', empty levels, encoded
and look-alike dots, backslashes, NUL, reserved words, over-long levels), directories with dotted names,
and symlinks out of the tree, into it, dangling and in loops. For every tree, against the local Parameter
Store (moto on 127.0.0.1), `configctl apply` either refuses the whole tree (exit code INVALID_INPUT, not a
single request sent) or writes only names under the prefix with no '.' or '..' level; and nothing outside
the prefix ever exists. The prefix's sibling `/config-service/other/` is seeded so an escape would show.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import configctl.cli
from configctl.exitcodes import ExitCode
from devstack.aws.local_aws import LocalAws

PREFIX = "/config-service/team/"
SIBLING = "/config-service/other/keep"

PIECES = st.sampled_from(
    [
        "..",
        ".",
        "",
        "a",
        "db_url",
        "...",
        "..a",
        "%2e%2e",
        "\u2025",  # two dot leader
        "\uff0e\uff0e",  # fullwidth full stops
        "..\\..",
        "\x00",
        "aws",
        "SSM",
        "other",
        "x" * 300,
    ]
)
KEYS = st.lists(PIECES, min_size=1, max_size=5).map("/".join)
DIRECTORIES = st.lists(st.sampled_from(["acme", "..x", "x..", "...", "a b", "other"]), max_size=3)
LINKS = st.sampled_from(["none", "file-out", "dir-out", "dir-in", "loop", "dangling"])
TREES = st.lists(
    st.tuples(DIRECTORIES, KEYS, st.booleans()), min_size=1, max_size=4
)  # (directories, key, nest the key under a mapping)


def _build(root: Path, entries: list[tuple[list[str], str, bool]], link: str) -> None:
    root.mkdir(parents=True)
    for index, (directories, key, nested) in enumerate(entries):
        folder = root.joinpath(*directories)
        folder.mkdir(parents=True, exist_ok=True)
        document: dict[str, Any] = {"group": {key: "v"}} if nested else {key: "v"}
        (folder / f"file{index}.yaml").write_text(yaml.safe_dump(document, allow_unicode=True))
    outside = root.parent / f"outside-{uuid.uuid4().hex[:6]}"
    outside.mkdir()
    (outside / "stolen.yaml").write_text("secret: x\n")
    if link == "file-out":
        os.symlink(outside / "stolen.yaml", root / "linked.yaml")
    elif link == "dir-out":
        os.symlink(outside, root / "linked")
    elif link == "dir-in":
        os.symlink(root, root / "again")
    elif link == "loop":
        (root / "deep").mkdir(exist_ok=True)
        os.symlink(root / "deep", root / "deep" / "down")
    elif link == "dangling":
        os.symlink(root / "missing.yaml", root / "gone.yaml")


def _all_names(ssm: Any) -> Iterator[str]:
    for page in ssm.get_paginator("describe_parameters").paginate():
        for parameter in page["Parameters"]:
            yield parameter["Name"]


def test_no_tree_writes_outside_its_prefix(local_aws: LocalAws, tmp_path: Path) -> None:
    ssm = local_aws.client("ssm")
    ssm.put_parameter(Name=SIBLING, Value="untouched", Type="String")
    env = {k: v for k, v in local_aws.env().items() if k.startswith("AWS_")}
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(TREES, LINKS)
    def never_outside(entries: list[tuple[list[str], str, bool]], link: str) -> None:
        root = tmp_path / uuid.uuid4().hex / "config"
        _build(root, entries, link)
        local_aws.reset_call_counts()
        result = CliRunner().invoke(configctl.cli.app, ["apply", str(root), "--prefix", PREFIX], env=env)
        if result.exit_code == ExitCode.INVALID_INPUT:
            assert "nothing was written" in result.stderr, result.stderr
            assert local_aws.call_counts().get("ssm:PutParameter", 0) == 0
            outcomes["refused"] += 1
        else:
            assert result.exit_code == ExitCode.OK, (result.exit_code, result.output)
            outcomes["applied"] += 1
        for name in _all_names(ssm):
            if name == SIBLING:
                continue
            assert name.startswith(PREFIX), name
            assert not {".", ".."} & set(name.split("/")), name
        assert ssm.get_parameter(Name=SIBLING)["Parameter"]["Value"] == "untouched"

    never_outside()
    written = [name for name in _all_names(ssm) if name != SIBLING]
    # the property must have been exercised both ways, or it proved nothing
    assert outcomes["refused"] > 0, outcomes
    assert outcomes["applied"] > 0, outcomes
    print(
        f"\nconfigctl hostile trees: {sum(outcomes.values())} trees, refused {outcomes['refused']}, "
        f"applied {outcomes['applied']} ({len(written)} names written, all under {PREFIX}); "
        "0 names outside the prefix"
    )
