"""Parameter Store's rules, checked before anything is written.

A plan that fails halfway because the fifth name has a space in it leaves a half-applied config behind;
checking every rule first means an invalid tree writes nothing. The rules are Parameter Store's own
(PutParameter's naming constraints and the tier limits), plus configctl's: every name stays under the
prefix, and no name segment is `.` or `..` (Parameter Store would store `/a/../b` literally, which no
one means).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

from configctl.model import DesiredParameter, InputProblem

MAX_NAME_LENGTH = 1011
MAX_DEPTH = 15
STANDARD_VALUE_BYTES = 4096
ADVANCED_VALUE_BYTES = 8192
MAX_DESCRIPTION = 1024
MAX_TAGS = 50

_ALLOWED = re.compile(r"^[A-Za-z0-9_.\-/]+$")
_RESERVED = ("aws", "ssm")


def prefix_problems(prefix: str) -> list[str]:
    """What is wrong with a --prefix (already normalized to end with '/')."""
    problems: list[str] = []
    if not prefix.startswith("/"):
        problems.append("the prefix must start with '/' (for example /config-service/)")
    elif prefix.strip("/") == "":
        problems.append(
            "the prefix must name at least one level (for example /config-service/); '/' is refused"
        )
    else:
        problems.extend(name_problems(prefix.rstrip("/")))
    return problems


def name_problems(name: str) -> list[str]:
    """Parameter Store's naming rules for a fully qualified hierarchical name."""
    problems: list[str] = []
    if not _ALLOWED.match(name):
        bad = sorted({c for c in name if not re.match(r"[A-Za-z0-9_.\-/]", c)})
        shown = " ".join(repr(c) for c in bad[:5])
        problems.append(f"name may only use letters, digits and _ . - / (found {shown})")
    if len(name) > MAX_NAME_LENGTH:
        problems.append(f"name is {len(name)} characters long; the maximum is {MAX_NAME_LENGTH}")
    segments = name.split("/")[1:] if name.startswith("/") else name.split("/")
    if len(segments) > MAX_DEPTH:
        problems.append(f"name has {len(segments)} levels; Parameter Store allows at most {MAX_DEPTH}")
    if any(segment == "" for segment in segments):
        problems.append("name has an empty level ('//' or a trailing '/')")
    if any(segment in (".", "..") for segment in segments):
        problems.append("name contains a '.' or '..' level (path traversal); refused")
    if segments and segments[0].lower().startswith(_RESERVED):
        problems.append("names cannot start with 'aws' or 'ssm' (case-insensitive): reserved by AWS")
    return problems


def _value_problems(parameter: DesiredParameter) -> list[str]:
    problems: list[str] = []
    size = len(parameter.value.encode("utf-8"))
    advanced = parameter.tier in ("Advanced", "Intelligent-Tiering")
    limit = ADVANCED_VALUE_BYTES if advanced else STANDARD_VALUE_BYTES
    if size == 0:
        problems.append("empty value (Parameter Store needs at least one character)")
    elif size > limit:
        hint = "" if advanced else "; set `tier: Advanced` for up to 8 KB"
        tier = parameter.tier or "Standard"
        problems.append(f"value is {size} bytes; the {tier} tier allows {limit}{hint}")
    if parameter.description is not None and len(parameter.description) > MAX_DESCRIPTION:
        problems.append(f"description is longer than {MAX_DESCRIPTION} characters")
    if len(parameter.tags) > MAX_TAGS:
        problems.append(f"more than {MAX_TAGS} tags")
    for key, value in parameter.tags:
        if not 1 <= len(key) <= 128 or len(value) > 256:
            problems.append(f"tag {key[:40]!r}: keys are 1-128 characters, values at most 256")
        if key.lower().startswith("aws:"):
            problems.append(f"tag {key[:40]!r}: the aws: prefix is reserved")
    return problems


def validate(parameters: Iterable[DesiredParameter], *, scope: str) -> list[InputProblem]:
    """Every problem with the parameters; `scope` is the path they must all stay under."""
    problems: list[InputProblem] = []
    first_source: dict[str, str] = {}
    for parameter in parameters:
        messages = name_problems(parameter.name)
        resolved = posixpath.normpath(parameter.name)
        if not f"{resolved}/".startswith(scope) or resolved == scope.rstrip("/"):
            messages.append(f"name {parameter.name[:200]} resolves outside the prefix {scope}; refused")
        messages.extend(_value_problems(parameter))
        if parameter.name in first_source:
            messages.append(f"parameter {parameter.name} is also defined by {first_source[parameter.name]}")
        else:
            first_source[parameter.name] = parameter.source
        problems.extend(InputProblem(parameter.source, message) for message in messages)
    return problems
