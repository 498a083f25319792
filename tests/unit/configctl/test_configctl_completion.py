"""configctl's shell completion: the script `--show-completion` prints, and the completion protocol that
script calls (the `_CONFIGCTL_COMPLETE` environment variable), run against the installed console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

CONFIGCTL = str(Path(sys.executable).with_name("configctl"))


def complete(*words: str) -> list[str]:
    """What bash would offer after `words` (the last word is the one being completed)."""
    env = {
        **os.environ,
        "_CONFIGCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": " ".join(("configctl", *words)),
        "COMP_CWORD": str(len(words)),
    }
    done = subprocess.run([CONFIGCTL], env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.split()


def test_the_commands_complete() -> None:
    assert complete("ap") == ["apply"]
    assert {"apply", "diff", "status", "refresh", "verify", "rollback", "rollout"} <= set(complete(""))


def test_a_commands_options_complete() -> None:
    assert {"--prefix", "--dry-run", "--wait", "--timeout"} <= set(complete("apply", "--"))


@pytest.mark.parametrize(
    ("shell", "hook"),
    [
        ("bash", "complete -o default -F _configctl_completion configctl"),
        ("zsh", "compdef _configctl_completion configctl"),
        ("fish", "complete --command configctl"),
    ],
)
def test_show_completion_prints_a_script_that_calls_the_protocol(shell: str, hook: str) -> None:
    # Shell detection off (it inspects the parent process, here pytest): the shell is then an argument.
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    done = subprocess.run(
        [CONFIGCTL, "--show-completion", shell],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"_CONFIGCTL_COMPLETE=complete_{shell}" in done.stdout
    assert hook in done.stdout
