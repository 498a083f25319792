"""Every exit code `configctl` can return, in one place.

Pipelines branch on these numbers (retry a timeout, page someone on a failed rollout, fix the input on a
validation error), so each outcome has its own code and the codes never change meaning. The same table is
printed in `configctl --help` and documented in docs/gitops.md.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of `configctl`."""

    OK = 0
    """Success: applied (and, with --wait, live everywhere), or nothing to do."""
    ERROR = 1
    """Unexpected error (a bug or an unclassified failure)."""
    USAGE = 2
    """Bad command line (unknown option, missing argument)."""
    INVALID_INPUT = 3
    """The config tree is invalid (bad YAML, bad name, value too large, ...): nothing was written."""
    AWS_ERROR = 4
    """AWS unusable before any write: no credentials, no region, access denied, endpoint unreachable."""
    APPLY_PARTIAL = 5
    """A write failed midway: some parameters were written, the rest were not (both are listed)."""
    ROLLOUT_FAILED = 6
    """--wait: a rollout ended PartiallyFailed, Failed or Halted (the failed instances are listed)."""
    WAIT_TIMEOUT = 7
    """--wait/--watch: the rollouts did not finish within --timeout."""
    KUBE_ERROR = 8
    """Kubernetes unusable: no kubeconfig, API server unreachable, forbidden."""
    NOT_FOUND = 9
    """The parameter or route named on the command line does not exist."""
    CHANGES_PENDING = 10
    """`diff --exit-code` only: the plan is not empty."""


_DESCRIPTIONS: dict[ExitCode, str] = {
    ExitCode.OK: "success (applied, live everywhere with --wait) or nothing to do",
    ExitCode.ERROR: "unexpected error",
    ExitCode.USAGE: "bad command line",
    ExitCode.INVALID_INPUT: "invalid config tree; nothing written",
    ExitCode.AWS_ERROR: "AWS unusable (credentials, region, access, endpoint); nothing written",
    ExitCode.APPLY_PARTIAL: "a write failed midway; written and unwritten parameters are listed",
    ExitCode.ROLLOUT_FAILED: "--wait: a rollout ended PartiallyFailed, Failed or Halted",
    ExitCode.WAIT_TIMEOUT: "--wait: rollouts not final within --timeout",
    ExitCode.KUBE_ERROR: "Kubernetes unusable (kubeconfig, API server, RBAC)",
    ExitCode.NOT_FOUND: "parameter or route not found",
    ExitCode.CHANGES_PENDING: "diff --exit-code: the plan has changes",
}


def describe(code: ExitCode) -> str:
    """One line saying what the code means."""
    return _DESCRIPTIONS[code]


def help_table() -> str:
    """The exit-code table as plain lines, for the --help epilog."""
    return "\n".join(f"{int(code):>3}  {describe(code)}" for code in ExitCode)


class ConfigctlError(Exception):
    """A failure with a message for people and an exit code for pipelines.

    The message must never contain a SecureString value.
    """

    def __init__(self, message: str, *, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
