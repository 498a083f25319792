"""configctl's settings: flags over the AWS SDK's and kubectl's variables over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from configctl.cli import app
from configctl.exitcodes import ExitCode
from configctl.settings import AWS, KUBE, ConfigctlSettings, load_settings, variable


def test_defaults_are_unset() -> None:
    settings = load_settings({})
    assert (settings.region, settings.endpoint_url, settings.profile) == (None, None, None)
    assert (settings.kubeconfig, settings.context, settings.namespace) == (None, None, None)


def test_the_environment_fills_what_no_flag_gives() -> None:
    env = {
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "AWS_PROFILE": "ci",
        "KUBECONFIG": "/tmp/kubeconfig",
        "CONFIGCTL_CONTEXT": "staging",
        "CONFIGCTL_NAMESPACE": "apps",
        "REGION": "not-read",
    }
    settings = load_settings(env, region=None, namespace="shop")
    assert settings == ConfigctlSettings(
        region="eu-west-1",
        endpoint_url="http://127.0.0.1:5000",
        profile="ci",
        kubeconfig="/tmp/kubeconfig",
        context="staging",
        namespace="shop",
    )


def test_an_empty_variable_means_unset() -> None:
    assert load_settings({"AWS_REGION": "", "KUBECONFIG": ""}).region is None


def test_the_command_line_reads_kubeconfig_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "no-such-kubeconfig"
    monkeypatch.setenv("KUBECONFIG", str(broken))
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == int(ExitCode.KUBE_ERROR)
    assert str(broken) in result.output


@pytest.mark.parametrize(
    ("command", "names"),
    [
        (["apply"], (*AWS, *KUBE)),
        (["diff"], AWS),
        (["status"], KUBE),
        (["refresh"], (*AWS, *KUBE)),
        (["verify"], KUBE),
        (["rollback"], (*AWS, *KUBE)),
        (["rollout", "resume"], KUBE),
    ],
)
def test_each_command_gets_the_flags_of_its_settings(command: list[str], names: tuple[str, ...]) -> None:
    shown = " ".join(CliRunner().invoke(app, [*command, "--help"]).output.split())
    for name in (*AWS, *KUBE):
        flag = f"--{name.replace('_', '-')}"
        assert (flag in shown) is (name in names), (command, flag)
        if name in names:
            assert f"[env {variable(name)}]" in shown, (command, name)
    assert ("-n, --namespace" in shown) is ("namespace" in names)
