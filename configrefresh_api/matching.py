"""Which parameters a ConfigRoute claims: `spec.parameterPrefix`, then `spec.scopePattern`'s named groups.

A scopePattern is user input run against every parameter name, so it is compiled with RE2 (google-re2),
whose matching time is linear in the name's length whatever the pattern: no pattern can backtrack, so no
route can stall the operator or configctl. Patterns RE2 cannot compile (backreferences, lookaround) are
refused, as are patterns longer than MAX_PATTERN_LENGTH. Names longer than Parameter Store's own limit
(MAX_PARAMETER_NAME_LENGTH) are never matched at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import re2

MAX_PATTERN_LENGTH = 512
MAX_PARAMETER_NAME_LENGTH = 2048
"""Parameter Store's own limit on a parameter name (the API's Name is 1..2048 characters)."""
RE2_MAX_MEMORY = 8 << 20
"""Memory RE2 may use for one compiled pattern (bounds the automaton a huge pattern could build)."""

ScopePattern = Any
"""A compiled RE2 pattern (google-re2's ``re2._Regexp``, which ships no type information)."""


class ScopePatternError(ValueError):
    """A scopePattern RE2 refuses (or one too long); the message says why, for people."""

    reason = "InvalidScopePattern"


def compile_scope_pattern(pattern: str) -> ScopePattern:
    """Compile with RE2 (linear-time matching); raise ScopePatternError for what RE2 refuses."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ScopePatternError(f"scopePattern is longer than {MAX_PATTERN_LENGTH} characters")
    options = re2.Options()
    options.log_errors = False
    options.max_mem = RE2_MAX_MEMORY
    try:
        return re2.compile(pattern, options=options)
    except re2.error as error:
        detail = error.args[0] if error.args else error
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ScopePatternError(
            f"scopePattern is not a valid RE2 expression ({detail}); backreferences and lookaround are "
            "not supported, since they need a backtracking matcher"
        ) from None


def scope_of(prefix: str, pattern: ScopePattern | None, parameter_name: str) -> dict[str, str] | None:
    """The named groups of `pattern` for this name (empty without a pattern); None if a route with this
    prefix and compiled pattern does not claim the name."""
    if len(parameter_name) > MAX_PARAMETER_NAME_LENGTH or not parameter_name.startswith(prefix):
        return None
    if pattern is None:
        return {}
    found = pattern.search(parameter_name)
    if found is None:
        return None
    return {str(key): str(value) for key, value in found.groupdict().items() if value is not None}


def is_refused(route: Mapping[str, Any]) -> bool:
    """Whether the operator refused a ConfigRoute body (Ready=False for its current generation): such a
    route routes nothing."""
    status = route.get("status") or {}
    generation = (route.get("metadata") or {}).get("generation")
    if status.get("observedGeneration") != generation:
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "False" for c in status.get("conditions") or []
    )


def route_scope(route: Mapping[str, Any], parameter_name: str) -> dict[str, str] | None:
    """The scope if the ConfigRoute body claims the parameter, else None: the operator's rule, for a
    client holding route bodies (configctl). A refused route or an invalid pattern claims nothing."""
    spec = route.get("spec") or {}
    prefix = spec.get("parameterPrefix")
    if not isinstance(prefix, str) or not parameter_name.startswith(prefix) or is_refused(route):
        return None
    raw = spec.get("scopePattern")
    try:
        pattern = compile_scope_pattern(raw) if raw else None
    except ScopePatternError:
        return None
    return scope_of(prefix, pattern, parameter_name)
