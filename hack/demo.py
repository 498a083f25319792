"""`make demo`: one config change travels the whole path, on a local stack, and is watched in kubectl.

    hack/demo.py          start the stack, run the demo, tear everything down (also on Ctrl-C)
    hack/demo.py up       start the stack and leave it running; prints how to use it
    hack/demo.py down     stop what `up` started (state file in the control-plane cache)

The stack (devstack.stack.builder): kube-apiserver + etcd (built from Go once, cached), local AWS (moto with
the Parameter Store change emitter), DEMO_INSTANCES real `config-service` processes (default 20) on
127.0.0.x, one Ready Pod object per instance, a ConfigRoute with podSync (so Cloud Map is filled from the
pods), and the operator as it ships. Refresh calls are secured as the charts deploy them: TLS on every
instance's refresh port (a certificate from the stack's own CA) and a bearer token checked on every call.
The demo then runs `configctl apply --wait` on examples/config/, changes one value and applies again, and
shows the `kubectl get configrefresh -w` progression, the value read back from three instances over
GetConfig, and the commit-to-applied latency the operator measured.
Exit status: 0 when both rollouts Succeeded and every value read back is right, 1 otherwise, 130 on
Ctrl-C (after tearing down).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from configrefresh_api.phases import SUCCEEDED

sys.path.insert(0, str(Path(__file__).resolve().parent))

from devstack.controlplane import build as controlplane_build
from devstack.stack.builder import Stack, StackError, stop_described

ROOT = Path(__file__).resolve().parent.parent
CONFIG_TREE = ROOT / "examples" / "config" / "tenants"
PREFIX = "/config-service/"
CHANGED = f"{PREFIX}acme/orders/max_items_per_order"
SECRET = f"{PREFIX}acme/orders/db_password"
OLD_VALUE, NEW_VALUE = "50", "75"
DEMO_PASSWORD = "demo-only-not-a-secret"  # noqa: S105 - the pipeline would inject the real one from its secret store
NAMESPACE = "demo"
STATE_FILE = Path(
    os.environ.get("DEMO_STATE_FILE") or controlplane_build.cache_root() / "run" / "demo-state.json"
)

console = Console(highlight=False, soft_wrap=True)


def say(text: str = "") -> None:
    console.print(text)


def step(number: int, text: str) -> None:
    console.print(f"\n[bold cyan]{number}. {text}[/]")


def instance_count() -> int:
    raw = os.environ.get("DEMO_INSTANCES", "").strip()
    count = int(raw) if raw else 20
    if count < 3:
        raise SystemExit("DEMO_INSTANCES must be at least 3 (the demo reads back from three instances)")
    return count


def ensure_control_plane() -> None:
    """Build kube-apiserver, etcd, kubectl and helm once per machine; say so, since it takes minutes."""
    if not controlplane_build.binaries().missing():
        return
    say(
        "[yellow]First run on this machine:[/] building kube-apiserver, kubectl, etcd and helm from their Go"
        f" modules into {controlplane_build.build_dir() / 'bin'}.\nThis usually takes 4 to 20 minutes on a"
        " 2-core machine (docs/testing-control-plane.md) and happens once; later runs start in seconds."
    )
    controlplane_build.ensure_built()


def start(instances: int, *, detach: bool) -> Stack:
    step(1, f"Starting the local stack with {instances} config-service instances")
    ensure_control_plane()
    return Stack.start(
        instances=instances,
        namespace=NAMESPACE,
        detach=detach,
        security="tls-token",
        say=lambda line: say(f"   {line}"),
    )


def configctl(stack: Stack, tree: Path, *extra: str) -> tuple[int, float]:
    """`configctl apply TREE --prefix /config-service/ --wait`, output shown as it comes; (exit, seconds)."""
    command = [
        str(Path(sys.executable).parent / "configctl"),
        "apply",
        str(tree),
        "--prefix",
        PREFIX,
        "--wait",
        "--timeout",
        "2m",
        "-n",
        NAMESPACE,
        "-o",
        "plain",
        *extra,
    ]
    env = {**stack.client_env(), "ACME_ORDERS_DB_PASSWORD": DEMO_PASSWORD}
    shown = " ".join(["configctl", *command[1:]]).replace(str(ROOT) + "/", "")
    say(f"   [dim]$ {shown}[/]")
    started = time.monotonic()
    code = subprocess.call(command, env=env, stdin=subprocess.DEVNULL)
    return code, time.monotonic() - started


def watch(stack: Stack, log: Path) -> subprocess.Popen[bytes]:
    """`kubectl get configrefresh -w` in the background, its lines captured to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                str(stack.control_plane.binaries.kubectl),
                f"--kubeconfig={stack.control_plane.kubeconfig}",
                "-n",
                NAMESPACE,
                "get",
                "configrefresh",
                "-w",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def changed_tree(workdir: Path) -> Path:
    """A copy of examples/config/tenants with acme's max_items_per_order changed from 50 to 75."""
    tree = workdir / "tenants"
    shutil.copytree(CONFIG_TREE, tree)
    orders = tree / "acme" / "orders.yaml"
    text = orders.read_text()
    old_line = f'max_items_per_order: "{OLD_VALUE}"'
    if old_line not in text:
        raise SystemExit(f"{orders} no longer has {old_line}; update hack/demo.py")
    orders.write_text(text.replace(old_line, f'max_items_per_order: "{NEW_VALUE}"'))
    return tree


def rollout_of(stack: Stack, name: str, version: int) -> dict[str, Any] | None:
    for item in stack.refreshes():
        parameter = item["spec"]["parameter"]
        if parameter["name"] == name and parameter.get("version") == version:
            return item
    return None


def read_back(stack: Stack, version: int) -> bool:
    """GetConfig from the first, middle and last instance: the new value and the secret."""
    ok = True
    picks = [stack.fleet[0], stack.fleet[len(stack.fleet) // 2], stack.fleet[-1]]
    for instance in picks:
        entry = instance.get_config(CHANGED)
        secret = instance.get_config(SECRET)
        good = entry.value == NEW_VALUE and int(entry.version) == version
        secret_good = secret.value == DEMO_PASSWORD
        ok = ok and good and secret_good
        mark = "[green]ok[/]" if good and secret_good else "[red]WRONG[/]"
        say(
            f"   {instance.instance_id:<7} {instance.config_address:<17} GetConfig max_items_per_order ="
            f" {entry.value!r} (v{entry.version}); db_password "
            f"{'matches the value configctl wrote' if secret_good else 'DOES NOT MATCH'}  {mark}"
        )
    return ok


def run_demo(stack: Stack, scratch: Path) -> bool:
    step(2, "What Kubernetes sees: Ready pods (their podIP is a local config-service) and the route")
    say(stack.kubectl("get", "pods", "-o", "wide").stdout.rstrip())
    say(stack.kubectl("get", "configroute").stdout.rstrip())

    watch_log = scratch / "watch.txt"
    watcher = watch(stack, watch_log)
    mark = 0
    try:
        step(3, "configctl apply --wait: the example config tree goes to Parameter Store, then to every pod")
        code, _ = configctl(stack, CONFIG_TREE)
        if code != 0:
            say(f"[red]FAILED: configctl apply exited with {code}[/]")
            return False

        step(4, f"One change: acme max_items_per_order {OLD_VALUE} -> {NEW_VALUE}, applied and waited for")
        time.sleep(1.0)  # let the watch print the first apply's final patches before the mark
        mark = watch_log.stat().st_size
        code, seconds = configctl(stack, changed_tree(scratch))
        if code != 0:
            say(f"[red]FAILED: configctl apply exited with {code}[/]")
            return False
        say(f"   configctl apply --wait returned after {seconds:.2f} s (write, rollout, wait included)")
        time.sleep(1.5)  # the watch prints the final status patch
    finally:
        watcher.terminate()
        watcher.wait(10)

    step(5, "That change's rollout as `kubectl get configrefresh -w` showed it, line by line")
    lines = watch_log.read_bytes().decode("utf-8", "replace").splitlines()
    say(lines[0] if lines else "(the watch printed nothing)")
    say(watch_log.read_bytes()[mark:].decode("utf-8", "replace").rstrip())
    say("\n   and every rollout of this demo, final (`kubectl get configrefresh`):")
    say(stack.kubectl("get", "configrefresh").stdout.rstrip())

    version = int(stack.local_aws.client("ssm").get_parameter(Name=CHANGED)["Parameter"]["Version"])
    rollout = rollout_of(stack, CHANGED, version)
    status = (rollout or {}).get("status") or {}
    phase = status.get("phase")
    say(f"\n   {CHANGED} v{version}: phase {phase}, refreshed {status.get('progress')}")
    if phase != SUCCEEDED:
        say(f"[red]FAILED: the rollout of {CHANGED} v{version} is {phase}, not Succeeded[/]")
        return False

    step(6, "Reading the value back from three instances (GetConfig)")
    if not read_back(stack, version):
        say("[red]FAILED: an instance does not serve what was written[/]")
        return False

    step(7, "Commit-to-applied latency (Parameter Store commit -> last instance acknowledged)")
    latency = status.get("latencyMs")
    say(
        f"   [bold green]{latency} ms[/] for {status.get('refreshed')} instances"
        f" (status.latencyMs of {rollout['metadata']['name'] if rollout else '?'})"
    )
    return True


def run() -> int:
    instances = instance_count()
    stack: Stack | None = None
    scratch = Path(tempfile.mkdtemp(prefix="config-refresh-demo-run-"))
    ok = False
    try:
        stack = start(instances, detach=False)
        ok = run_demo(stack, scratch)
    except KeyboardInterrupt:
        say("\n[yellow]Interrupted: tearing everything down.[/]")
        return 130
    except StackError as exc:
        say(f"[red]FAILED to start the stack: {exc}[/]")
        return 1
    finally:
        if stack is not None:
            step(8, "Tearing down: operator, config-service instances, local AWS, control plane")
            stack.stop()
            say("   stopped.")
        shutil.rmtree(scratch, ignore_errors=True)
    if ok:
        say("\n[bold green]Demo complete:[/] a config commit reached every instance, visible in kubectl.")
    return 0 if ok else 1


def up() -> int:
    if STATE_FILE.exists():
        say(f"A demo stack is already recorded in {STATE_FILE}; run `make demo-down` first.")
        return 1
    stack = start(instance_count(), detach=True)
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(stack.describe(), indent=2))
    aws = stack.local_aws
    kubeconfig = stack.control_plane.kubeconfig
    say("\n[bold green]The stack is running.[/] Use it from another shell:\n")
    say(f"  export KUBECONFIG={kubeconfig}")
    for key, value in aws.env().items():
        if key.startswith("AWS_"):
            say(f"  export {key}={value}")
    say(f"\n  queue       {aws.queue_url}")
    say(f"  namespace   {NAMESPACE} (ConfigRoute config-service, podSync on pods app=config-service)")
    say(f"  operator    pid {stack.operator.pid}, log {stack.operator.log_path}")
    say(f"  instances   GetConfig at {stack.fleet[0].config_address} ... {stack.fleet[-1].config_address}")
    say("\n  Try:")
    say(
        "  ACME_ORDERS_DB_PASSWORD=s3cret configctl apply examples/config/tenants"
        f" --prefix {PREFIX} --wait -n demo"
    )
    say(f"  aws ssm put-parameter --name {CHANGED} --value 99 --type String --overwrite")
    say("  kubectl get configrefresh -n demo -w")
    say("  configctl status -n demo")
    say(f"  configctl refresh {CHANGED} -n demo")
    say("\n  Stop it with: make demo-down")
    return 0


def down() -> int:
    if not STATE_FILE.exists():
        say("No demo stack is recorded; nothing to stop.")
        return 0
    stopped = stop_described(json.loads(STATE_FILE.read_text()))
    STATE_FILE.unlink(missing_ok=True)
    say(f"Stopped: {', '.join(stopped) or 'nothing was still running'}.")
    return 0


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    # Ctrl-C and SIGTERM tear the stack down, also when the demo was started in the background: a
    # non-interactive shell starts `cmd &` with SIGINT ignored, and Python then installs no handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    command = argv[0] if argv else "run"
    if command == "run":
        return run()
    if command == "up":
        return up()
    if command == "down":
        return down()
    say(f"usage: hack/demo.py [run|up|down] (got {command!r})")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
