"""The API group and version of the two kinds, their plurals and short names (the CRDs in crds/ agree)."""

from __future__ import annotations

GROUP = "configrefresh.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

ROUTE_KIND = "ConfigRoute"
ROUTES = "configroutes"
ROUTE_SHORT_NAME = "cfgroute"

REFRESH_KIND = "ConfigRefresh"
REFRESHES = "configrefreshes"
REFRESH_SHORT_NAME = "cfgr"
