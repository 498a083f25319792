"""`configctl apply --wait` end to end: the real API server, moto, the operator and config-service
instances on 127.0.0.x. The pipeline step passes only once every instance serves the new values, and
fails naming the instance that did not get them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devstack.stack.builder import Stack

CONFIGCTL = str(Path(sys.executable).parent / "configctl")
SECRET = "e2e-S3CRET-d41c"


def configctl(stack: Stack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONFIG_REFRESH_"))}
    env.update({k: v for k, v in stack.local_aws.env().items() if k.startswith("AWS_")})
    env.update(KUBECONFIG=str(stack.control_plane.kubeconfig), ORDERS_PASSWORD=SECRET)
    return subprocess.run(
        [CONFIGCTL, *args, "--namespace", stack.namespace] if args[0] != "apply" else [CONFIGCTL, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_tree(root: Path, *, items: str) -> Path:
    (root / "acme").mkdir(parents=True, exist_ok=True)
    (root / "acme" / "orders.yaml").write_text(
        f"max_items: '{items}'\n"
        "db_url: postgres://acme/orders\n"
        "password:\n  type: SecureString\n  valueFrom: {env: ORDERS_PASSWORD}\n"
    )
    return root


def apply_wait(stack: Stack, tree: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return configctl(
        stack,
        "apply",
        str(tree),
        "--prefix",
        stack.local_aws.prefix,
        "--wait",
        "--timeout",
        "3m",
        "--namespace",
        stack.namespace,
        *extra,
    )


def test_apply_wait_returns_zero_once_every_instance_serves_the_new_values(
    stack: Stack, tmp_path: Path
) -> None:
    prefix = stack.local_aws.prefix
    tree = write_tree(tmp_path / "config", items="50")
    first = apply_wait(stack, tree)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Live: 3 rollout(s) Succeeded" in first.stdout
    assert stack.values(f"{prefix}acme/orders/max_items") == [("50", 1)] * 10
    assert stack.values(f"{prefix}acme/orders/db_url") == [("postgres://acme/orders", 1)] * 10

    write_tree(tree, items="75")
    second = apply_wait(stack, tree, "-o", "json")
    assert second.returncode == 0, second.stdout + second.stderr
    report = json.loads(second.stdout)
    assert [w["name"] for w in report["apply"]["written"]] == [f"{prefix}acme/orders/max_items"]
    assert report["wait"]["result"] == "OK"
    [rollout] = report["wait"]["rollouts"]
    assert (rollout["phase"], rollout["version"], rollout["targets"], rollout["failed"]) == (
        "Succeeded",
        2,
        10,
        0,
    )
    # The counts (refreshed/stale) are not asserted here: the values on the instances below are the proof,
    # and the operator's progress patch can land after its final one (reported to the lead).
    # Returned only after every instance acknowledged: the values are already there.
    assert stack.values(f"{prefix}acme/orders/max_items") == [("75", 2)] * 10
    for output in (first.stdout, first.stderr, second.stdout, second.stderr):
        assert SECRET not in output
    print(f"\napply --wait, 1 change, 10 instances: {report['wait']['elapsedSeconds']:.2f} s")


def test_apply_wait_with_an_instance_down_fails_and_names_it(stack: Stack, tmp_path: Path) -> None:
    prefix = stack.local_aws.prefix
    tree = write_tree(tmp_path / "config", items="50")
    assert apply_wait(stack, tree).returncode == 0
    down = stack.fleet[3]
    down.stop()
    write_tree(tree, items="99")
    result = apply_wait(stack, tree)
    assert result.returncode == 6, result.stdout + result.stderr  # ExitCode.ROLLOUT_FAILED
    assert down.instance_id in result.stderr
    assert f"{prefix}acme/orders/max_items v2 [services]: PartiallyFailed" in result.stderr
    values = stack.values(f"{prefix}acme/orders/max_items")
    assert values.count(("99", 2)) == 9
    assert SECRET not in result.stdout + result.stderr


def test_status_and_manual_refresh_through_the_cli(stack: Stack, tmp_path: Path) -> None:
    prefix = stack.local_aws.prefix
    name = f"{prefix}acme/orders/max_items"
    assert apply_wait(stack, write_tree(tmp_path / "config", items="50")).returncode == 0

    refreshed = configctl(stack, "refresh", name, "--wait", "--timeout", "3m")
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    assert "Live: 1 rollout(s) Succeeded" in refreshed.stdout

    status = configctl(stack, "status", name, "-o", "json")
    assert status.returncode == 0, status.stderr
    rollouts = json.loads(status.stdout)["rollouts"]
    assert [(r["trigger"], r["phase"], r["version"]) for r in rollouts] == [
        ("manual", "Succeeded", 1),
        ("event", "Succeeded", 1),
    ]
    watched = configctl(stack, "status", name, "--watch", "--timeout", "30s")
    assert watched.returncode == 0, watched.stderr
    assert f"{name} v1 [services]: Succeeded" in watched.stdout
    plain = configctl(stack, "status", "--route", stack.route)
    assert plain.returncode == 0
    assert f"{name} v1 route=services phase=Succeeded refreshed=" in plain.stdout
    assert "failed=0" in plain.stdout
