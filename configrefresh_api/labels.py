"""Labels and annotations the project sets on its objects, all under the API group.

Labels make `kubectl get cfgr -l configrefresh.io/route=...`, retention, `configctl wait` and the Halted
look-up work without parsing names; the full parameter name is an annotation because label values cannot
hold slashes. No label or annotation ever holds a parameter's value.
"""

from __future__ import annotations

from configrefresh_api.groupversion import GROUP
from configrefresh_api.naming import label_value, parameter_hash

LABEL_ROUTE = f"{GROUP}/route"
"""On a ConfigRefresh: its route's name (cut to 63 characters, see `naming.label_value`)."""
LABEL_PARAMETER_HASH = f"{GROUP}/parameter-hash"
"""On a ConfigRefresh: `naming.parameter_hash` of the parameter name."""
LABEL_VERSION = f"{GROUP}/version"
"""On a ConfigRefresh: the parameter version (0 for a deletion)."""
LABEL_HALTED = f"{GROUP}/halted"
"""Set ("true") before a rollout is recorded Halted, removed once it leaves Halted: a newer version finds
the Halted rollouts it takes over by this label instead of listing every rollout of its parameter. It is a
hint, never the truth: the phase is checked too, so a label left behind by a crash changes nothing."""

ANNOTATION_PARAMETER_NAME = f"{GROUP}/parameter-name"
"""On a ConfigRefresh: the full parameter name."""
ROLLOUT_ACTION_ANNOTATION = f"{GROUP}/rollout-action"
"""On a Halted ConfigRefresh: `resume-<token>` or `abort-<token>`, set by `configctl rollout resume|abort`."""
VERIFY_ANNOTATION = f"{GROUP}/verify-requested"
"""On a ConfigRoute: a fresh token set by `configctl verify` asks the operator for a resync pass now."""
KOPF_PREFIX = f"kopf.{GROUP}"
"""Where the operator's framework (kopf) keeps its own bookkeeping annotations."""
AUDIENCE_PREFIX = GROUP
"""Service-account token audiences are `<AUDIENCE_PREFIX>/<cloud map namespace>/<service>` by default."""


def default_audience(cloud_map_namespace: str, cloud_map_service: str) -> str:
    """The token audience of a route's instances unless `spec.refresh.auth.audience` says otherwise:
    one per Cloud Map service, so a token captured at one service is refused by every other."""
    return f"{AUDIENCE_PREFIX}/{cloud_map_namespace}/{cloud_map_service}"


def refresh_selector(
    *, route: str | None = None, parameter_name: str | None = None, halted: bool = False
) -> str:
    """The label selector of the ConfigRefresh objects of a route and/or a parameter ("" = all of them);
    `halted` keeps only those labelled Halted."""
    terms = []
    if parameter_name is not None:
        terms.append(f"{LABEL_PARAMETER_HASH}={parameter_hash(parameter_name)}")
    if route is not None:
        terms.append(f"{LABEL_ROUTE}={label_value(route)}")
    if halted:
        terms.append(f"{LABEL_HALTED}=true")
    return ",".join(terms)
