"""Entry point of `config-refresh-operator`: kopf with the project's handlers and settings.

The usual kopf options pass through (namespaces or cluster-wide, liveness endpoint, verbosity, peering);
everything else is settings from the environment (settings.py), validated before kopf starts so a bad
deployment fails at once naming the key.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import kopf

from refresh_operator import logs
from refresh_operator.handlers import register
from refresh_operator.injection import webhook as injection
from refresh_operator.injection.template import TemplateError
from refresh_operator.logs import LogFormat
from refresh_operator.podsync import handlers as podsync
from refresh_operator.runtime import Runtime
from refresh_operator.settings import SettingsError, load_settings


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="config-refresh-operator",
        description="Push Parameter Store changes to every healthy instance, recorded as ConfigRefresh.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--liveness", metavar="URL", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument(
        "--log-format",
        type=LogFormat,
        choices=list(LogFormat),
        default=LogFormat.TEXT,
        help="text (kopf's lines) or json (one object per line, config-service's fields); default: text",
    )
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument("--standalone", action="store_true", help="no peering with other replicas")
    peering.add_argument("--peering", metavar="NAME", help="the KopfPeering/ClusterKopfPeering to use")
    parser.add_argument("--priority", type=int, default=None, help="peering priority of this replica")
    args = parser.parse_args(argv)
    if not args.namespace and not args.all_namespaces:
        parser.error("one of --namespace/-n or --all-namespaces is required")
    return args


QUIET_LIBRARIES = ("botocore", "boto3", "urllib3", "s3transfer", "kubernetes")
"""Loggers held at INFO even with --verbose: at DEBUG, botocore logs whole response bodies, which would
put GetParameter's (decrypted) values in the log."""


def configure_logging(
    *, verbose: bool, quiet: bool, log_format: LogFormat = LogFormat.TEXT, instance_id: str | None = None
) -> None:
    logs.configure(
        log_format=log_format,
        verbose=verbose,
        quiet=quiet,
        quiet_libraries=QUIET_LIBRARIES,
        instance_id=instance_id,
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"config-refresh-operator: invalid settings: {error}", file=sys.stderr)
        sys.exit(2)
    configure_logging(
        verbose=args.verbose, quiet=args.quiet, log_format=args.log_format, instance_id=settings.pod_id
    )
    namespaces = None if args.all_namespaces else list(args.namespace)
    registry = kopf.get_default_registry()
    runtime = Runtime(settings=settings, namespaces=namespaces)
    if settings.pod_sync:
        # podSync (issue 6), a peer on the same registry: the operator's Kubernetes client and thread pool.
        podsync.register(registry, settings, kube_api=runtime.kube, run=runtime.blocking.call)
    register(registry, runtime)
    try:
        # issue 21: the sidecar injection webhook, on every replica
        injection.register(registry, settings, source=runtime.kube, namespaces=namespaces)
    except TemplateError as error:
        print(f"config-refresh-operator: invalid settings: {error}", file=sys.stderr)
        sys.exit(2)
    asyncio.run(
        kopf.operator(
            registry=registry,
            clusterwide=args.all_namespaces,
            namespaces=namespaces or (),
            standalone=args.standalone or None,
            peering_name=args.peering,
            priority=args.priority,
            liveness_endpoint=args.liveness,
        )
    )
