"""The command line: kopf's options pass through, and --verbose never turns on botocore's body logging."""

from __future__ import annotations

import logging

import pytest

from refresh_operator.cli import QUIET_LIBRARIES, configure_logging, parse_args


def test_kopf_options_are_accepted() -> None:
    args = parse_args(
        ["-n", "a", "--namespace", "b", "--peering", "p", "--priority", "7", "--liveness", "http://x"]
    )
    assert args.namespace == ["a", "b"]
    assert (args.peering, args.priority, args.liveness) == ("p", 7, "http://x")
    assert parse_args(["--all-namespaces", "--standalone"]).all_namespaces


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["-n", "a", "--all-namespaces"],
        ["-n", "a", "--standalone", "--peering", "p"],
        ["-n", "a", "-v", "-q"],
    ],
)
def test_contradictory_or_missing_scope_is_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_verbose_logging_keeps_aws_response_bodies_out_of_the_log() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging(verbose=True, quiet=False)
    try:
        assert logging.getLogger().level == logging.DEBUG
        for name in QUIET_LIBRARIES:
            assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
        assert not logging.getLogger("botocore.parsers").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.NOTSET)
