"""`hack/local-aws up|down|env|status`: the local AWS stack for a shell session.

`up` starts the moto process detached from the terminal, provisions it and records where it is in a
state file; `env` prints shell exports for the endpoint and resource names (`eval "$(hack/local-aws
env)"`); `down` stops it and removes the state file. The state file is
`$XDG_RUNTIME_DIR/config-refresh/local-aws.json` when that directory exists, otherwise
`.demo/local-aws.json` in the repository; `--state-file` or LOCAL_AWS_STATE_FILE overrides both.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from devstack.aws.local_aws import DEFAULT_PREFIX, LocalAws, LocalAwsError

_REPO_ROOT = Path(__file__).resolve().parents[3]


def default_state_file() -> Path:
    override = os.environ.get("LOCAL_AWS_STATE_FILE")
    if override:
        return Path(override)
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and Path(runtime_dir).is_dir():
        return Path(runtime_dir) / "config-refresh" / "local-aws.json"
    return _REPO_ROOT / ".demo" / "local-aws.json"


def _load(state_file: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    return state


def _attach(state: dict[str, Any]) -> LocalAws:
    """The running stack a state file describes; LocalAwsError if it no longer answers as that process."""
    stack = LocalAws.from_description(state)
    health = stack.health()
    if health.get("pid") != state["pid"]:
        raise LocalAwsError(
            f"{state['endpoint_url']} is answered by another process (pid {health.get('pid')})"
        )
    return stack


def up(args: argparse.Namespace) -> int:
    state_file: Path = args.state_file
    state = _load(state_file)
    if state is not None:
        try:
            _attach(state)
        except LocalAwsError:
            state_file.unlink(missing_ok=True)
        else:
            print(f"local AWS already up at {state['endpoint_url']} (state {state_file})", file=sys.stderr)
            return 0
    log_path = state_file.parent / "local-aws.log"
    stack = LocalAws.start(
        prefix=args.prefix,
        max_receive_count=args.max_receive_count,
        visibility_timeout=args.visibility_timeout,
        port=args.port,
        log_path=log_path,
        detach=True,
    )
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(stack.describe(), indent=2) + "\n")
    print(f"local AWS up at {stack.endpoint_url} (pid {stack.pid}, log {log_path})", file=sys.stderr)
    print('load it into a shell with: eval "$(hack/local-aws env)"', file=sys.stderr)
    return 0


def env(args: argparse.Namespace) -> int:
    state = _load(args.state_file)
    if state is None:
        print("local AWS is not up: run `hack/local-aws up` first", file=sys.stderr)
        return 1
    try:
        stack = _attach(state)
    except LocalAwsError as exc:
        print(f"local AWS is not answering ({exc}): run `hack/local-aws up` again", file=sys.stderr)
        return 1
    for key, value in stack.env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def down(args: argparse.Namespace) -> int:
    state_file: Path = args.state_file
    state = _load(state_file)
    if state is None:
        print("local AWS is not up", file=sys.stderr)
        return 0
    try:
        stack = _attach(state)
    except LocalAwsError:
        print("local AWS was no longer answering; removed its state file", file=sys.stderr)
    else:
        stack.stop()
        print(f"local AWS at {state['endpoint_url']} stopped", file=sys.stderr)
    state_file.unlink(missing_ok=True)
    return 0


def status(args: argparse.Namespace) -> int:
    state = _load(args.state_file)
    if state is None:
        print("down")
        return 1
    try:
        _attach(state)
    except LocalAwsError:
        print(f"stale state file {args.state_file} (server not answering)")
        return 1
    print(f"up at {state['endpoint_url']} (pid {state['pid']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/local-aws", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-file", type=Path, default=None, help="where `up` records the stack")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the moto process in the background and provision it")
    up_parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="parameter name prefix the rule matches")
    up_parser.add_argument("--max-receive-count", type=int, default=3, help="receives before the DLQ")
    up_parser.add_argument("--visibility-timeout", type=int, default=30, help="queue visibility timeout (s)")
    up_parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    commands.add_parser("env", help="print shell exports for the running stack")
    commands.add_parser("down", help="stop the stack and remove its state file")
    commands.add_parser("status", help="say whether the stack is up")
    args = parser.parse_args(argv)
    if args.state_file is None:
        args.state_file = default_state_file()
    handlers = {"up": up, "env": env, "down": down, "status": status}
    try:
        return handlers[args.command](args)
    except LocalAwsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
