"""SecureString values never appear in any output of configctl: table, plain, JSON, YAML, diff, dry-run,
the partial-failure report, and the validation errors, for creates, updates and prunes alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import configctl.cli
from configctl.exitcodes import ExitCode
from configctl.masking import MASK
from devstack.aws.local_aws import LocalAws

PREFIX = "/config-service/"
OLD = "old-S3CRET-4f9a"
NEW = "new-S3CRET-77c1"
RETIRED = "retired-S3CRET-0b3e"


@pytest.fixture
def run(local_aws: LocalAws, tmp_path: Path) -> Callable[..., tuple[int, str]]:
    env = {k: v for k, v in local_aws.env().items() if k.startswith("AWS_")}
    env["PW"] = NEW

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(configctl.cli.app, list(args), env=env)
        return result.exit_code, result.stdout + result.stderr

    return invoke


@pytest.fixture
def tree(local_aws: LocalAws, tmp_path: Path) -> Path:
    ssm = local_aws.client("ssm")
    ssm.put_parameter(Name="/config-service/acme/orders/pw", Value=OLD, Type="SecureString")
    ssm.put_parameter(Name="/config-service/acme/orders/retired", Value=RETIRED, Type="SecureString")
    root = tmp_path / "config"
    (root / "acme").mkdir(parents=True)
    (root / "acme" / "orders.yaml").write_text(
        "pw:\n  type: SecureString\n  valueFrom: {env: PW}\n"
        f"inline:\n  type: SecureString\n  value: {NEW}-inline\n"
        "url: https://acme\n"
    )
    return root


def assert_no_secret(text: str) -> None:
    for secret in (OLD, NEW, RETIRED):
        assert secret not in text


@pytest.mark.parametrize(
    "args",
    [
        ["diff"],
        ["diff", "-o", "json"],
        ["diff", "-o", "yaml"],
        ["diff", "-o", "table"],
        ["apply", "--dry-run", "--prune"],
        ["apply", "--dry-run", "--prune", "-o", "json"],
        ["apply", "--dry-run", "--prune", "-o", "table"],
        ["apply", "--prune", "-o", "json"],
        ["apply", "--prune", "-o", "yaml"],
        ["apply", "--prune", "-o", "table"],
        ["apply", "--prune", "-o", "plain"],
    ],
    ids=lambda a: "-".join(a),
)
def test_secret_values_are_masked_in_every_mode(
    run: Callable[..., tuple[int, str]], tree: Path, local_aws: LocalAws, args: list[str]
) -> None:
    code, text = run(args[0], str(tree), "--prefix", PREFIX, *args[1:])
    assert code == 0, text
    assert "/config-service/acme/orders/pw" in text
    assert MASK in text
    assert_no_secret(text)
    if "--dry-run" not in args and args[0] == "apply":
        value = local_aws.client("ssm").get_parameter(
            Name="/config-service/acme/orders/pw", WithDecryption=True
        )
        assert value["Parameter"]["Value"] == NEW


def test_secrets_stay_masked_when_a_write_fails(
    run: Callable[..., tuple[int, str]], tree: Path, local_aws: LocalAws
) -> None:
    local_aws.inject_fault(
        "ssm:PutParameter",
        "ValidationException",
        count=1,
        status=400,
        message=f"Value '{NEW}-inline' at 'value' bad",
    )
    code, text = run("apply", str(tree), "--prefix", PREFIX)
    assert code == ExitCode.APPLY_PARTIAL, text
    assert "ValidationException" in text
    assert_no_secret(text)


def test_secrets_stay_masked_in_validation_errors(run: Callable[..., tuple[int, str]], tree: Path) -> None:
    (tree / "acme" / "big.yaml").write_text(f"blob:\n  type: SecureString\n  value: {NEW * 400}\n")
    code, text = run("apply", str(tree), "--prefix", PREFIX, "-o", "json")
    assert code == ExitCode.INVALID_INPUT
    assert "the Standard tier allows 4096" in text
    assert_no_secret(text)
