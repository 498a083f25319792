"""`configctl apply` and `diff` against the local Parameter Store (moto on 127.0.0.1, shared fixture).

The CLI runs in-process through typer's runner with the stack's environment (endpoint, fake
credentials); what is checked is what a user checks: exit code, the message, and what Parameter Store
holds afterwards (values, versions, and the request log of the endpoint).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner, Result

import configctl.aws
import configctl.cli
import configctl.commands
from configctl.exitcodes import ExitCode
from devstack.aws.local_aws import LocalAws

PREFIX = "/config-service/"
SECRET = "pa55-W0rd-never-printed"
NEW_SECRET = "n3w-pa55-never-printed"

Invoke = Callable[..., Result]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "config"
    (root / "acme").mkdir(parents=True)
    (root / "globex").mkdir()
    (root / "acme" / "orders.yaml").write_text(
        "db_url: postgres://acme/orders\n"
        "max_items: '50'\n"
        "currencies: [EUR, USD]\n"
        "db_password:\n  type: SecureString\n  valueFrom: {env: ORDERS_DB_PASSWORD}\n"
    )
    (root / "globex" / "orders.yaml").write_text("db_url: postgres://globex/orders\n")
    return root


@pytest.fixture
def invoke(local_aws: LocalAws) -> Invoke:
    env = {k: v for k, v in local_aws.env().items() if k.startswith("AWS_")}
    env["ORDERS_DB_PASSWORD"] = SECRET

    def run(*args: str, extra_env: Mapping[str, str | None] | None = None) -> Result:
        return CliRunner().invoke(configctl.cli.app, list(args), env={**env, **(extra_env or {})})

    return run


def stored(local_aws: LocalAws) -> dict[str, tuple[str, int]]:
    ssm = local_aws.client("ssm")
    found: dict[str, tuple[str, int]] = {}
    for page in ssm.get_paginator("get_parameters_by_path").paginate(
        Path=PREFIX.rstrip("/"), Recursive=True, WithDecryption=True
    ):
        for p in page["Parameters"]:
            found[p["Name"]] = (p["Value"], p["Version"])
    return found


def puts(local_aws: LocalAws) -> int:
    return local_aws.call_counts().get("ssm:PutParameter", 0)


def test_first_apply_creates_everything(local_aws: LocalAws, tree: Path, invoke: Invoke) -> None:
    result = invoke("apply", str(tree), "--prefix", PREFIX)
    assert result.exit_code == 0, result.output
    assert stored(local_aws) == {
        "/config-service/acme/orders/db_url": ("postgres://acme/orders", 1),
        "/config-service/acme/orders/max_items": ("50", 1),
        "/config-service/acme/orders/currencies": ("EUR,USD", 1),
        "/config-service/acme/orders/db_password": (SECRET, 1),
        "/config-service/globex/orders/db_url": ("postgres://globex/orders", 1),
    }
    assert "Plan for /config-service/: 5 to create, 0 to update, 0 to delete, 0 unchanged." in result.output
    assert "written: create /config-service/acme/orders/db_url version 1" in result.output


def test_unchanged_values_are_never_rewritten(local_aws: LocalAws, tree: Path, invoke: Invoke) -> None:
    assert invoke("apply", str(tree), "--prefix", PREFIX).exit_code == 0
    local_aws.reset_call_counts()
    result = invoke("apply", str(tree), "--prefix", PREFIX)
    assert result.exit_code == 0, result.output
    assert "0 to create, 0 to update, 0 to delete, 5 unchanged" in result.output
    assert "Nothing to do." in result.output
    assert puts(local_aws) == 0
    assert {version for _, version in stored(local_aws).values()} == {1}


def test_update_writes_only_the_changed_parameter(local_aws: LocalAws, tree: Path, invoke: Invoke) -> None:
    assert invoke("apply", str(tree), "--prefix", PREFIX).exit_code == 0
    (tree / "acme" / "orders.yaml").write_text(
        (tree / "acme" / "orders.yaml").read_text().replace("max_items: '50'", "max_items: '75'")
    )
    local_aws.reset_call_counts()
    result = invoke("apply", str(tree), "--prefix", PREFIX)
    assert result.exit_code == 0, result.output
    assert '~ /config-service/acme/orders/max_items (String v1): "50" -> "75"' in result.output
    assert puts(local_aws) == 1
    after = stored(local_aws)
    assert after["/config-service/acme/orders/max_items"] == ("75", 2)
    assert after["/config-service/acme/orders/db_url"] == ("postgres://acme/orders", 1)


def test_prune_deletes_only_with_the_flag(local_aws: LocalAws, tree: Path, invoke: Invoke) -> None:
    ssm = local_aws.client("ssm")
    ssm.put_parameter(Name="/config-service/acme/orders/retired", Value="x", Type="String")
    ssm.put_parameter(Name="/elsewhere/keep", Value="x", Type="String")
    kept = invoke("apply", str(tree), "--prefix", PREFIX)
    assert kept.exit_code == 0, kept.output
    assert "1 parameter(s) under /config-service/ are not in the tree (--prune deletes them)." in kept.output
    assert "/config-service/acme/orders/retired" in stored(local_aws)
    pruned = invoke("apply", str(tree), "--prefix", PREFIX, "--prune")
    assert pruned.exit_code == 0, pruned.output
    assert '- /config-service/acme/orders/retired (String v1) (was "x")' in pruned.output
    assert "/config-service/acme/orders/retired" not in stored(local_aws)
    assert ssm.get_parameter(Name="/elsewhere/keep")["Parameter"]["Value"] == "x"


def test_dry_run_writes_nothing(local_aws: LocalAws, tree: Path, invoke: Invoke) -> None:
    assert invoke("apply", str(tree), "--prefix", PREFIX).exit_code == 0
    (tree / "acme" / "orders.yaml").write_text("db_url: changed\n")
    before = stored(local_aws)
    local_aws.reset_call_counts()
    result = invoke("apply", str(tree), "--prefix", PREFIX, "--prune", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Dry run: nothing was written." in result.output
    assert "0 to create, 1 to update, 3 to delete, 1 unchanged." in result.output
    counts = local_aws.call_counts()
    assert "ssm:PutParameter" not in counts
    assert "ssm:DeleteParameters" not in counts
    assert stored(local_aws) == before


def test_diff_shows_the_plan_and_exit_code_reports_changes(
    local_aws: LocalAws, tree: Path, invoke: Invoke
) -> None:
    result = invoke("diff", str(tree), "--prefix", PREFIX, "--exit-code")
    assert result.exit_code == ExitCode.CHANGES_PENDING
    assert '+ /config-service/globex/orders/db_url (String) = "postgres://globex/orders"' in result.output
    assert puts(local_aws) == 0
    assert invoke("apply", str(tree), "--prefix", PREFIX).exit_code == 0
    assert invoke("diff", str(tree), "--prefix", PREFIX, "--exit-code").exit_code == 0


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _symlink_out(root: Path) -> None:
    outside = root.parent / "outside.yaml"
    outside.write_text("stolen: x\n")
    os.symlink(outside, root / "acme" / "linked.yaml")


INVALID_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "bad-yaml": (lambda r: _write(r, "acme/broken.yaml", "a: [1, 2\n"), "acme/broken.yaml: invalid YAML"),
    "rejected-name": (
        lambda r: _write(r, "acme/orders2.yaml", "'db url': x\n"),
        "acme/orders2.yaml:db url: name may only use letters, digits and _ . - / (found ' ')",
    ),
    "value-over-limit": (
        lambda r: _write(r, "acme/big.yaml", "blob: " + "x" * 4097 + "\n"),
        "acme/big.yaml:blob: value is 4097 bytes; the Standard tier allows 4096",
    ),
    "duplicate-key": (
        lambda r: _write(r, "acme/dup.yaml", "a: 1\nb: 2\na: 3\n"),
        "acme/dup.yaml: duplicate key 'a' on line 3 (first on line 1)",
    ),
    "path-traversal": (
        lambda r: _write(r, "acme/escape.yaml", "'../../../../other/x': v\n"),
        "name contains a '.' or '..' level (path traversal); refused",
    ),
    "outside-prefix": (
        lambda r: _write(r, "acme/escape.yaml", "'../../../x': v\n"),
        "resolves outside the prefix /config-service/; refused",
    ),
    "symlink-out-of-tree": (
        _symlink_out,
        "acme/linked.yaml: symlink points outside the config tree; refused",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
def test_invalid_input_gives_a_clear_message_and_writes_nothing(
    local_aws: LocalAws, tree: Path, invoke: Invoke, case: str
) -> None:
    damage, message = INVALID_CASES[case]
    damage(tree)
    local_aws.reset_call_counts()
    result = invoke("apply", str(tree), "--prefix", PREFIX)
    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert message in result.stderr
    assert "nothing was written" in result.stderr
    assert local_aws.call_counts() == {}
    assert stored(local_aws) == {}


def test_a_reserved_prefix_is_refused(local_aws: LocalAws, tree: Path, invoke: Invoke) -> None:
    result = invoke("apply", str(tree), "--prefix", "/aws/")
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "names cannot start with 'aws' or 'ssm'" in result.stderr
    assert local_aws.call_counts() == {}


def test_missing_credentials_fail_before_any_request(local_aws: LocalAws, tree: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=local_aws.endpoint_url,
        AWS_REGION=local_aws.region,
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_EC2_METADATA_DISABLED="true",
        ORDERS_DB_PASSWORD=SECRET,
    )
    local_aws.reset_call_counts()
    done = subprocess.run(
        [sys.executable, "-m", "configctl.cli", "apply", str(tree), "--prefix", PREFIX],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == ExitCode.AWS_ERROR, done.stderr
    assert "no AWS credentials found" in done.stderr
    assert "Nothing was written." in done.stderr
    assert local_aws.call_counts() == {}


def _fail_after(local_aws: LocalAws, successes: int) -> Callable[..., boto3.Session]:
    """A session factory whose client arms a server-side fault once `successes` writes went through."""
    original = configctl.aws.session_for  # what configctl.commands imported, before the monkeypatch
    seen = {"puts": 0}

    def after_put(**_: Any) -> None:
        seen["puts"] += 1
        if seen["puts"] == successes:
            local_aws.inject_fault("ssm:PutParameter", "AccessDeniedException", count=1, status=400)

    def factory(settings: Any) -> boto3.Session:
        session = original(settings)
        session.events.register("after-call.ssm.PutParameter", after_put)
        return session

    return factory


def test_failure_midway_names_written_and_unwritten(
    local_aws: LocalAws, tree: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(configctl.commands, "session_for", _fail_after(local_aws, successes=2))
    result = invoke("apply", str(tree), "--prefix", PREFIX, "-o", "json")
    assert result.exit_code == ExitCode.APPLY_PARTIAL, result.output
    report = json.loads(result.stdout)["apply"]
    assert report["written"] == [
        {"name": "/config-service/acme/orders/currencies", "action": "create", "version": 1},
        {"name": "/config-service/acme/orders/db_password", "action": "create", "version": 1},
    ]
    assert report["failed"]["name"] == "/config-service/acme/orders/db_url"
    assert report["failed"]["error"].startswith("AccessDeniedException")
    assert [n["name"] for n in report["notWritten"]] == [
        "/config-service/acme/orders/max_items",
        "/config-service/globex/orders/db_url",
    ]
    assert sorted(stored(local_aws)) == [
        "/config-service/acme/orders/currencies",
        "/config-service/acme/orders/db_password",
    ]
    assert SECRET not in result.output


def test_failure_midway_in_plain_mode_lists_both_sides(
    local_aws: LocalAws, tree: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(configctl.commands, "session_for", _fail_after(local_aws, successes=3))
    result = invoke("apply", str(tree), "--prefix", PREFIX)
    assert result.exit_code == ExitCode.APPLY_PARTIAL
    assert "written: create /config-service/acme/orders/db_url version 1" in result.stdout
    assert (
        "error: failed: create /config-service/acme/orders/max_items: AccessDeniedException" in result.stderr
    )
    assert "error: not written: create /config-service/globex/orders/db_url" in result.stderr
    assert "apply stopped: 3 written, 1 failed, 1 not written" in result.stderr


def test_throttling_is_retried_by_the_adaptive_retry(local_aws: LocalAws, tree: Path, invoke: Invoke) -> None:
    local_aws.inject_fault("ssm:PutParameter", "ThrottlingException", count=2)
    result = invoke("apply", str(tree), "--prefix", PREFIX)
    assert result.exit_code == 0, result.output
    assert puts(local_aws) == 5 + 2
    assert len(stored(local_aws)) == 5


def test_wait_without_a_kubeconfig_fails_before_writing(
    local_aws: LocalAws, tree: Path, invoke: Invoke, tmp_path: Path
) -> None:
    result = invoke(
        "apply", str(tree), "--prefix", PREFIX, "--wait", extra_env={"KUBECONFIG": str(tmp_path / "missing")}
    )
    assert result.exit_code == ExitCode.KUBE_ERROR, result.output
    assert "cannot load kubeconfig" in result.stderr
    assert puts(local_aws) == 0
    assert stored(local_aws) == {}


def test_tag_changes_add_tags_without_a_new_version(
    local_aws: LocalAws, tmp_path: Path, invoke: Invoke
) -> None:
    root = tmp_path / "tagged"
    (root / "acme").mkdir(parents=True)
    orders = root / "acme" / "orders.yaml"
    orders.write_text("url:\n  value: https://a\n  tags: {team: payments}\n")
    assert invoke("apply", str(root), "--prefix", PREFIX).exit_code == 0
    name = "/config-service/acme/orders/url"
    ssm = local_aws.client("ssm")

    def tags() -> dict[str, str]:
        listed = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
        return {t["Key"]: t["Value"] for t in listed}

    assert tags() == {"team": "payments"}
    local_aws.reset_call_counts()
    assert "1 unchanged" in invoke("apply", str(root), "--prefix", PREFIX).output
    orders.write_text("url:\n  value: https://a\n  tags: {team: checkout, tier: gold}\n")
    result = invoke("apply", str(root), "--prefix", PREFIX)
    assert result.exit_code == 0, result.output
    assert f"~ {name} (String v1): [tags changed]" in result.output
    assert puts(local_aws) == 0
    assert stored(local_aws)[name] == ("https://a", 1)
    assert tags() == {"team": "checkout", "tier": "gold"}
