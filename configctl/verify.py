"""`configctl verify`: ask the operator for a resync pass of one route (or all) now, and report it.

The operator owns the fleet's state; configctl only asks. It sets the route's
`configrefresh.io/verify-requested` annotation to a fresh token; the operator sees the change, runs the
route's resync pass at once (missed-event recovery, then GetState on every healthy instance and a
targeted refresh for any instance behind) and writes `status.resync` with the token it answered, which
is what `--wait` waits for.
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import Sequence
from typing import Any

from configctl.exitcodes import ConfigctlError, ExitCode
from configctl.kube import Kube
from configrefresh_api.labels import VERIFY_ANNOTATION


def request_verify(kube: Kube, routes: Sequence[str] | None) -> dict[str, str]:
    """Annotate the routes (all in the namespace when None); returns route name → token."""
    names = list(routes) if routes else [str(r["metadata"]["name"]) for r in kube.list_routes()]
    if not names:
        raise ConfigctlError(f"no ConfigRoute in {kube.namespace}", exit_code=ExitCode.NOT_FOUND)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    tokens = {}
    for name in names:
        token = f"{stamp}-{secrets.token_hex(4)}"
        kube.annotate_route(name, {VERIFY_ANNOTATION: token})
        tokens[name] = token
    return tokens


def wait_answered(kube: Kube, tokens: dict[str, str], *, timeout: float) -> dict[str, dict[str, Any]]:
    """Until every route's status.resync answers its token (or the timeout); returns what is answered."""
    deadline = time.monotonic() + timeout
    answered: dict[str, dict[str, Any]] = {}
    while True:
        for name, token in tokens.items():
            if name in answered:
                continue
            route = kube.get_route(name) or {}
            resync = (route.get("status") or {}).get("resync") or {}
            if resync.get("verifyRequest") == token:
                answered[name] = dict(resync)
        if len(answered) == len(tokens) or time.monotonic() >= deadline:
            return answered
        time.sleep(0.5)
