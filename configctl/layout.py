"""The documented directory layout: which file and key becomes which parameter.

    <tree>/acme/orders.yaml        key `db_url`   ->  <prefix>acme/orders/db_url
    <tree>/acme/orders.yaml        key `db/pool`  ->  <prefix>acme/orders/db/pool
    <file>  (PATH is one file)     key `db_url`   ->  <prefix><file stem>/db_url

A file holds one mapping. A value is a scalar (String), a list of scalars (StringList), or a mapping
`{value | valueFrom: {env: NAME}, type, kmsKeyId, description, tags, tier}`. `valueFrom.env` lets a
pipeline inject a secret from its own secret store instead of committing it.

Only `.yaml`, `.yml` and `.json` files are read; names starting with "." (such as `.git`) are skipped.
The walk refuses to leave the tree: a symlink whose target resolves outside the tree is an error, not a
file to follow. Problems are collected, not raised one by one, so a user sees every mistake at once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from configctl.documents import SUFFIXES, DocumentError, read_document
from configctl.model import PARAMETER_TYPES, TIERS, DesiredParameter, InputProblem, ParameterType, Tier

_SPEC_KEYS = frozenset({"value", "valueFrom", "type", "kmsKeyId", "description", "tags", "tier"})


@dataclasses.dataclass(frozen=True)
class Source:
    """Where parameters come from: a tree (or one file) and the prefix it maps under."""

    path: Path
    prefix: str

    @property
    def scope(self) -> str:
        """The Parameter Store path this source owns (what the plan reads, and what --prune may delete)."""
        if self.path.is_file():
            return f"{self.prefix}{self.path.stem}/"
        return self.prefix


@dataclasses.dataclass(frozen=True)
class LoadResult:
    parameters: tuple[DesiredParameter, ...]
    problems: tuple[InputProblem, ...]


def normalize_prefix(prefix: str) -> str:
    """`/config-service` and `/config-service/` both mean `/config-service/`."""
    return prefix if prefix.endswith("/") else f"{prefix}/"


def _walk(root: Path, problems: list[InputProblem]) -> Iterator[tuple[Path, str]]:
    """Yield (path, path relative to root with '/' separators), refusing to leave the tree."""
    real_root = root.resolve()
    visited: set[Path] = set()

    def visit(directory: Path, relative: str) -> Iterator[tuple[Path, str]]:
        real_dir = directory.resolve()
        if real_dir in visited:
            problems.append(InputProblem(relative or ".", "directory symlink loop"))
            return
        visited.add(real_dir)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            problems.append(InputProblem(relative or ".", f"cannot list directory: {exc.strerror}"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = f"{relative}/{entry.name}" if relative else entry.name
            path = Path(entry.path)
            if entry.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(real_root):
                    problems.append(InputProblem(rel, "symlink points outside the config tree; refused"))
                    continue
                if not target.exists():
                    if path.suffix.lower() in SUFFIXES:
                        problems.append(InputProblem(rel, "cannot read file: dangling symlink"))
                    continue
            if path.is_dir():
                yield from visit(path, rel)
            elif path.suffix.lower() in SUFFIXES:
                yield path, rel

    yield from visit(root, "")


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return None


def _string_list(items: list[Any], where: str, problems: list[InputProblem]) -> str | None:
    texts = [_scalar(item) for item in items]
    if not items or any(t is None or t == "" for t in texts):
        problems.append(InputProblem(where, "a StringList needs one or more non-empty scalar items"))
        return None
    if any("," in t for t in texts if t is not None):
        problems.append(InputProblem(where, "StringList items cannot contain commas"))
        return None
    return ",".join(t for t in texts if t is not None)


def _parameter(
    *,
    name: str,
    raw: Any,
    where: str,
    environ: Mapping[str, str],
    problems: list[InputProblem],
) -> DesiredParameter | None:
    if raw is None:
        problems.append(InputProblem(where, "empty value (Parameter Store needs at least one character)"))
        return None
    if isinstance(raw, list):
        value = _string_list(raw, where, problems)
        return None if value is None else DesiredParameter(name, value, "StringList", where)
    scalar = _scalar(raw)
    if scalar is not None:
        return DesiredParameter(name, scalar, "String", where)
    if not isinstance(raw, dict):
        problems.append(InputProblem(where, f"unsupported value of kind {type(raw).__name__}"))
        return None
    return _from_spec(name=name, spec=raw, where=where, environ=environ, problems=problems)


def _from_spec(
    *,
    name: str,
    spec: dict[Any, Any],
    where: str,
    environ: Mapping[str, str],
    problems: list[InputProblem],
) -> DesiredParameter | None:
    unknown = sorted(str(k) for k in spec if k not in _SPEC_KEYS)
    if unknown:
        problems.append(
            InputProblem(
                where,
                f"unknown field(s) {', '.join(unknown)} (a mapping value takes value or valueFrom, type, "
                "kmsKeyId, description, tags, tier; nest names with subdirectories or 'a/b' keys)",
            )
        )
        return None
    type_raw = spec.get("type")
    if type_raw is not None and type_raw not in PARAMETER_TYPES:
        problems.append(InputProblem(where, f"type must be one of {', '.join(PARAMETER_TYPES)}"))
        return None
    raw_value = spec.get("value")
    if "valueFrom" in spec:
        if "value" in spec:
            problems.append(InputProblem(where, "give value or valueFrom, not both"))
            return None
        source = spec["valueFrom"]
        env_name = source.get("env") if isinstance(source, dict) else None
        if not isinstance(env_name, str) or set(source) != {"env"}:
            problems.append(InputProblem(where, "valueFrom takes exactly {env: VARIABLE_NAME}"))
            return None
        if env_name not in environ:
            problems.append(InputProblem(where, f"environment variable {env_name} is not set"))
            return None
        raw_value = environ[env_name]
    elif "value" not in spec:
        problems.append(InputProblem(where, "a mapping value needs `value` or `valueFrom`"))
        return None
    default_type: ParameterType = "StringList" if isinstance(raw_value, list) else "String"
    ptype: ParameterType = type_raw if type_raw is not None else default_type
    if raw_value is None:
        problems.append(InputProblem(where, "empty value (Parameter Store needs at least one character)"))
        return None
    value: str | None
    if isinstance(raw_value, list):
        if ptype != "StringList":
            problems.append(InputProblem(where, "a list value needs type StringList"))
            return None
        value = _string_list(raw_value, where, problems)
    else:
        value = _scalar(raw_value)
        if value is None:
            problems.append(InputProblem(where, "value must be a scalar or a list of scalars"))
    if value is None:
        return None
    return _with_metadata(
        DesiredParameter(name, value, ptype, where), spec=spec, where=where, problems=problems
    )


def _with_metadata(
    parameter: DesiredParameter,
    *,
    spec: dict[Any, Any],
    where: str,
    problems: list[InputProblem],
) -> DesiredParameter | None:
    ok = True
    tier = spec.get("tier")
    if tier is not None and tier not in TIERS:
        problems.append(InputProblem(where, f"tier must be one of {', '.join(TIERS)}"))
        ok = False
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        problems.append(InputProblem(where, "description must be a string"))
        ok = False
    kms = spec.get("kmsKeyId")
    if kms is not None and (not isinstance(kms, str) or parameter.type != "SecureString"):
        problems.append(InputProblem(where, "kmsKeyId is a string and only applies to SecureString"))
        ok = False
    tags_raw = spec.get("tags") or {}
    if not isinstance(tags_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags_raw.items()
    ):
        problems.append(InputProblem(where, "tags must map strings to strings"))
        ok = False
    if not ok:
        return None
    tier_value: Tier | None = tier
    return dataclasses.replace(
        parameter,
        description=description,
        tier=tier_value,
        kms_key_id=kms,
        tags=tuple(sorted(tags_raw.items())),
    )


def _file_parameters(
    *,
    path: Path,
    base_name: str,
    where: str,
    environ: Mapping[str, str],
    problems: list[InputProblem],
) -> Iterator[DesiredParameter]:
    try:
        document = read_document(path)
    except DocumentError as exc:
        problems.append(InputProblem(where, str(exc)))
        return
    if document is None:
        return
    if not isinstance(document, dict):
        problems.append(InputProblem(where, "a config file must hold one mapping of key: value"))
        return
    for key, raw in document.items():
        if not isinstance(key, str):
            problems.append(InputProblem(where, f"key {key!r} is not a string"))
            continue
        parameter = _parameter(
            name=f"{base_name}/{key}",
            raw=raw,
            where=f"{where}:{key}",
            environ=environ,
            problems=problems,
        )
        if parameter is not None:
            yield parameter


def load(source: Source, *, environ: Mapping[str, str] | None = None) -> LoadResult:
    """Read the tree (or file) into desired parameters; names are not validated here (see validation)."""
    env = os.environ if environ is None else environ
    problems: list[InputProblem] = []
    parameters: list[DesiredParameter] = []
    root = source.path
    if not root.exists():
        return LoadResult((), (InputProblem(str(root), "no such file or directory"),))
    if root.is_file():
        files: Iterator[tuple[Path, str]] = iter([(root, root.name)])
    else:
        files = _walk(root, problems)
    for path, relative in files:
        stem = relative[: -len(path.suffix)]
        parameters.extend(
            _file_parameters(
                path=path,
                base_name=f"{source.prefix}{stem}",
                where=relative,
                environ=env,
                problems=problems,
            )
        )
    return LoadResult(tuple(parameters), tuple(problems))
