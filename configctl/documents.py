"""Reading one YAML or JSON file strictly: duplicate keys are errors, scalars keep their exact text.

PyYAML's default loaders keep the last of two equal keys silently and turn `1.10` into the float 1.1,
`on` into True and `2026-01-01` into a date. For configuration that is two ways to ship a value nobody
wrote. This loader rejects duplicate keys (with the line of both) and resolves plain scalars only to
strings or null, so the value written in the file is the value stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode

SUFFIXES = (".yaml", ".yml", ".json")


class DocumentError(Exception):
    """A file that cannot be read or parsed; the message says where."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without implicit int/float/bool/timestamp resolution and with duplicate-key checks."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DocumentError(f"duplicate key {key!r} on line {line} (first on line {seen[key]})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# Keep only the null resolver among the implicit ones: everything else plain stays a string.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_mapping)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DocumentError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _json_scalar(text: str) -> str:
    return text


def parse_text(text: str, *, suffix: str) -> Any:
    """Parse a document; raises DocumentError with a message that does not quote values."""
    if suffix == ".json":
        try:
            return json.loads(
                text,
                object_pairs_hook=_no_duplicates,
                parse_float=_json_scalar,
                parse_int=_json_scalar,
            )
        except json.JSONDecodeError as exc:
            raise DocumentError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise DocumentError(f"invalid YAML: {exc.problem or exc.context}{where}") from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"invalid YAML: {type(exc).__name__}") from None


def read_document(path: Path) -> Any:
    """Read and parse one file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot read file: {exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 text (byte {exc.start})") from None
    return parse_text(text, suffix=path.suffix.lower())
