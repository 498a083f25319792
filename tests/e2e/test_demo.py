"""`make demo` as a newcomer runs it (issue 9): the whole path on the local stack, small fleet.

The demo is run as a subprocess exactly as `make demo` runs it (`.venv/bin/python hack/demo.py`), with
DEMO_INSTANCES=3. What is checked is what its reader would check: the change's rollout Succeeded on all
three instances, the new value (and the secret) read back from three instances, a latency printed, and
everything torn down, also when the demo is interrupted with Ctrl-C (SIGINT) half-way, and with
`demo up` / `demo down`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.controlplane.plane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, str(ROOT / "hack" / "demo.py")]


def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CONFIG_"))}
    env.update({"DEMO_INSTANCES": "3", "DEMO_STATE_FILE": str(tmp_path / "demo-state.json"), "NO_COLOR": "1"})
    return env


def answers(url: str) -> bool:
    """Whether something accepts TCP connections at the host:port of `url`."""
    host, port = url.split("//", 1)[-1].rstrip("/").rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def endpoints(output: str) -> list[str]:
    """The control plane and local AWS URLs the demo printed."""
    found = re.findall(r"(?:control plane|local AWS)\s+(https?://127\.0\.0\.1:\d+)", output)
    assert len(found) == 2, output
    return found


def test_demo_rolls_a_change_out_and_reads_it_back_from_three_instances(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # control_plane: the binaries are built (the demo would build them too, but not within a test timeout).
    done = subprocess.run(
        DEMO, env=demo_env(tmp_path), capture_output=True, text=True, timeout=280, stdin=subprocess.DEVNULL
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # Step 2's `kubectl get configroute`: INSTANCES counts the 3 registered pods right after creation.
    assert re.search(r"config-service\s+/config-service/\s+config-service\s+3\s+True\s", output), output
    assert re.search(r"max_items_per_order v2: phase Succeeded, refreshed 3/3", output), output
    assert re.search(r"max_items_per_order\s+2\s+Succeeded\s+3/3\s+0\s+\d+", output), output
    read_back = re.findall(r"GetConfig max_items_per_order = '75' \(v2\); db_password matches", output)
    assert len(read_back) == 3, output
    assert re.search(r"\d+ ms for 3 instances", output), output
    assert "demo-only-not-a-secret" not in output  # the secret is compared, never printed
    for url in endpoints(output):
        assert not answers(url), f"{url} still answers after the demo ended"


def test_ctrl_c_tears_the_stack_down(control_plane: ControlPlane, tmp_path: Path) -> None:
    log = tmp_path / "demo.out"
    with log.open("wb") as out:
        demo = subprocess.Popen(DEMO, env=demo_env(tmp_path), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not re.search(r"refresh port \d+", log.read_text()) and time.monotonic() < deadline:
            assert demo.poll() is None, log.read_text()
            time.sleep(0.2)
        demo.send_signal(signal.SIGINT)
        code = demo.wait(120)
    finally:
        if demo.poll() is None:
            demo.kill()
    output = log.read_text()
    assert code == 130, output
    assert "Interrupted: tearing everything down" in output
    for url in endpoints(output):
        assert not answers(url), f"{url} still answers after Ctrl-C"
    hosts = re.search(r"on (127\.0\.0\.\d+)\.\.\S+, refresh port (\d+)", output)
    assert hosts, output  # the fleet had started before the interrupt: its port is closed too
    assert not answers(f"http://{hosts.group(1)}:{hosts.group(2)}"), output


@pytest.mark.timeout(400)
def test_demo_up_leaves_the_stack_running_and_down_stops_it(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    env = demo_env(tmp_path)
    up = subprocess.run(
        [*DEMO, "up"], env=env, capture_output=True, text=True, timeout=280, stdin=subprocess.DEVNULL
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "export KUBECONFIG=" in up.stdout
        assert "configctl apply examples/config/tenants" in up.stdout
        urls = endpoints(up.stdout)
        assert all(answers(url) for url in urls), up.stdout  # still running after `up` returned
    finally:
        down = subprocess.run(
            [*DEMO, "down"], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
    assert down.returncode == 0, down.stdout
    assert "operator" in down.stdout, down.stdout
    assert "3 config-service processes" in down.stdout, down.stdout
    for url in urls:
        assert not answers(url), f"{url} still answers after demo down"
    assert not (tmp_path / "demo-state.json").exists()
