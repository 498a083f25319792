"""The configrefresh.io/v1alpha1 API: the two kinds and everything their objects agree on.

In the manner of kubebuilder's `api/v1alpha1`, this package is the contract between the programs that
read and write ConfigRoute and ConfigRefresh objects (the operator, its podSync controller, configctl,
the benchmarks and the dev tooling). It imports nothing of the project's own code (an import-linter
contract in pyproject.toml keeps it so), only the standard library and RE2 for route matching.

- `groupversion`: GROUP, VERSION, kinds, plurals and short names;
- `labels`: labels and annotations, and the label selector of a route's or a parameter's objects;
- `phases`: every `status.phase` (Halted included) and `spec.source.trigger`;
- `versions` and `times`: the order of parameter versions and the one textual form of a timestamp;
- `naming`: deterministic ConfigRefresh names and the parameter hash;
- `conditions`: the one condition builder (and merge) for both kinds;
- `matching`: which parameters a route claims (prefix, RE2 scopePattern);
- `refresh` and `route`: typed, frozen ConfigRefresh and ConfigRoute with `from_body`/`to_body`, and
  `new_refresh`, the one builder of a new ConfigRefresh.
"""

from __future__ import annotations

from configrefresh_api.conditions import Condition
from configrefresh_api.groupversion import (
    API_VERSION,
    GROUP,
    REFRESH_KIND,
    REFRESHES,
    ROUTE_KIND,
    ROUTES,
    VERSION,
)
from configrefresh_api.phases import TERMINAL_PHASES, Phase, Trigger
from configrefresh_api.refresh import (
    ConfigRefresh,
    ConfigRefreshSpec,
    ConfigRefreshStatus,
    InstanceStatus,
    ParameterRef,
    Source,
    new_refresh,
)
from configrefresh_api.route import ConfigRoute, ConfigRouteSpec, ConfigRouteStatus
from configrefresh_api.versions import Operation, VersionKey

__all__ = [
    "API_VERSION",
    "GROUP",
    "REFRESHES",
    "REFRESH_KIND",
    "ROUTES",
    "ROUTE_KIND",
    "TERMINAL_PHASES",
    "VERSION",
    "Condition",
    "ConfigRefresh",
    "ConfigRefreshSpec",
    "ConfigRefreshStatus",
    "ConfigRoute",
    "ConfigRouteSpec",
    "ConfigRouteStatus",
    "InstanceStatus",
    "Operation",
    "ParameterRef",
    "Phase",
    "Source",
    "Trigger",
    "VersionKey",
    "new_refresh",
]
