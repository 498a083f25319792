#!/usr/bin/env python3
"""Writes the values tables of docs/install-eks.md from the `# --` comments of the charts' values.yaml.

Why a script and not helm-docs: it is twenty lines of parsing, needs no Go tool, and the same pass checks
what the chart style asks for, so `--check` (run by tests/unit/charts/test_chart_render.py) fails when:
- a key has no `# --` comment (on itself or on a parent documented as a whole, like `resources`);
- a key with an empty default ("", [], {}) has no example ("e.g." / "Example") and does not say what
  empty means;
- values.schema.json does not describe a key;
- the tables in the doc are not what this script would write.

The convention is helm-docs': a `# --` comment documents the key right below it; following `#` lines
continue the sentence; lines indented further after `#` (YAML examples) are left out of the table.

    .venv/bin/python hack/gen-values-table.py          # rewrite the tables
    .venv/bin/python hack/gen-values-table.py --check  # exit 1 with the problems, change nothing
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHARTS = ("config-refresh-operator", "config-service", "config-refresh-crds")
DOC = ROOT / "docs" / "install-eks.md"
KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+):(\s|$)")
EXAMPLE_CODE = re.compile(r"^#\s{3,}")
EMPTY_EXPLAINED = ("e.g.", "example", "empty means", "empty creates", "empty sends")


@dataclass(frozen=True)
class Row:
    """One documented value: its dotted key, type, default and description."""

    key: str
    type: str
    default: str
    description: str


def comments_by_path(text: str) -> dict[tuple[str, ...], str]:
    """Map each key path to the `# --` comment right above it."""
    docs: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None and not EXAMPLE_CODE.match(stripped):
                pending.append(stripped[1:].strip())
            continue
        match = KEY_LINE.match(line)
        if match is None:
            continue
        indent = len(match.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group("key")))
        if pending is not None:
            docs[tuple(key for _, key in stack)] = " ".join(part for part in pending if part)
        pending = None
    return docs


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def rows_for(chart_dir: Path) -> tuple[list[Row], list[str]]:
    """The table rows of one chart, and the problems found on the way."""
    text = (chart_dir / "values.yaml").read_text()
    values = yaml.safe_load(text)
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    docs = comments_by_path(text)
    rows: list[Row] = []
    problems: list[str] = []

    def schema_has(path: tuple[str, ...]) -> bool:
        node = schema
        for key in path:
            properties = node.get("properties", {})
            if key not in properties:
                return False
            node = properties[key]
        return True

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> None:
        for key, value in node.items():
            here = (*path, key)
            dotted = ".".join(here)
            if not schema_has(here):
                problems.append(f"{chart_dir.name}: values.schema.json does not describe {dotted}")
            description = docs.get(here)
            if description is None:
                if isinstance(value, dict) and value:
                    walk(value, here)
                else:
                    problems.append(f"{chart_dir.name}: {dotted} has no '# --' comment")
                continue
            if value in ("", [], {}) and not any(w in description.lower() for w in EMPTY_EXPLAINED):
                problems.append(f"{chart_dir.name}: {dotted} defaults to empty but shows no example")
            default = json.dumps(value, separators=(", ", ": "))
            rows.append(Row(dotted, _type_of(value), default, description))

    walk(values, ())
    return rows, problems


def table(rows: list[Row]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    lines += [f"| `{r.key}` | {r.type} | `{cell(r.default)}` | {cell(r.description)} |" for r in rows]
    return "\n".join(lines)


def _constant(text: str, _match: re.Match[str]) -> str:
    return text


def render_doc(doc: str, tables: dict[str, str]) -> str:
    """Replace the text between each chart's markers with its table."""
    for chart, body in tables.items():
        start, end = f"<!-- values-table:{chart}:start -->", f"<!-- values-table:{chart}:end -->"
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        if not pattern.search(doc):
            raise SystemExit(f"error: {DOC} has no '{start}' ... '{end}' markers")
        # A function replacement, so that backslashes in the table are not read as group references.
        replacement = f"{start}\n{body}\n{end}"
        doc = pattern.sub(functools.partial(_constant, replacement), doc)
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="report problems and stale tables, write nothing"
    )
    args = parser.parse_args(argv)
    tables: dict[str, str] = {}
    problems: list[str] = []
    for chart in CHARTS:
        rows, found = rows_for(ROOT / "charts" / chart)
        tables[chart] = table(rows)
        problems += found
    current = DOC.read_text()
    wanted = render_doc(current, tables)
    if args.check:
        if wanted != current:
            problems.append(f"{DOC.relative_to(ROOT)}: values tables are stale; run hack/gen-values-table.py")
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1 if problems else 0
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if wanted != current:
        DOC.write_text(wanted)
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
