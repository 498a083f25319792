"""The rows docs/benchmarks.md was written from, kept in the repository beside it (docs/benchmarks/rows.json).

Why: `python -m bench --only ROW --merge` reports one row measured now beside the others' last run, and
those used to live only in this machine's cache (~/.cache/config-refresh/bench). On a fresh machine there
was nothing to merge with, so re-measuring one row meant a whole `make bench` (over an hour on 2 cores).
A full run that writes docs/benchmarks.md writes this file too, so the report and its rows are committed
together; `--merge` starts from it, and this machine's cache (rows measured here since) goes on top.

JSON rather than pickle: it is reviewable in a diff, and does not execute anything when read. Each
dataclass is stored with its type name, so reading it back gives the objects the report is built from
(rendering again from this file alone reproduces docs/benchmarks.md); plots are stored relative to the
repository, and a dict whose keys are not strings (fleet sizes) keeps them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bench.common import ROOT, Check, Machine, Row, RowResult
from bench.staleness import Summary

ROWS_FILE = ROOT / "docs" / "benchmarks" / "rows.json"
REPORT = ROOT / "docs" / "benchmarks.md"
"""The report the file belongs to: only a run writing this report (not `--quick`) writes the file."""

TYPES: dict[str, type] = {cls.__name__: cls for cls in (Row, RowResult, Check, Machine, Summary)}
FORMAT = 1


class RowsFileError(ValueError):
    """The rows file cannot be read as rows (a hand edit, a newer format, a type this code lacks)."""


def encode(value: Any) -> Any:
    """`value` as JSON-ready data, tagged so that `decode` gives the same objects back."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if TYPES.get(name) is not type(value):
            raise TypeError(f"{name} is not a type the rows file knows; add it to bench/rows_file.TYPES")
        fields = {field.name: encode(getattr(value, field.name)) for field in dataclasses.fields(value)}
        return {"__type__": name, **fields}
    if isinstance(value, Path):
        resolved = value if value.is_absolute() else ROOT / value
        return {"__path__": resolved.relative_to(ROOT).as_posix()}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(item) for item in value]}
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("__") for key in value):
            return {key: encode(item) for key, item in value.items()}
        return {"__items__": [[encode(key), encode(item)] for key, item in value.items()]}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"a {type(value).__name__} cannot go into the rows file: {value!r:.80}")


def decode(data: Any) -> Any:
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict):
        return data
    if "__type__" in data:
        cls = TYPES.get(data["__type__"])
        if cls is None:
            raise RowsFileError(f"unknown type {data['__type__']!r} in the rows file")
        return cls(**{key: decode(item) for key, item in data.items() if key != "__type__"})
    if "__path__" in data:
        return ROOT / data["__path__"]
    if "__tuple__" in data:
        return tuple(decode(item) for item in data["__tuple__"])
    if "__items__" in data:
        return {decode(key): decode(item) for key, item in data["__items__"]}
    return {key: decode(item) for key, item in data.items()}


def newest(*sources: dict[str, Row]) -> dict[str, Row]:
    """Every row named in `sources`, each from its latest run (the run's date; a later source wins a tie)."""
    merged: dict[str, Row] = {}
    for rows in sources:
        for name, row in rows.items():
            held = merged.get(name)
            if held is None or _date(row) >= _date(held):
                merged[name] = row
    return merged


def _date(row: Row) -> str:
    return row.machine.date if row.machine is not None else ""  # "YYYY-MM-DD HH:MM UTC" sorts as text


def dump(rows: dict[str, Row], path: Path = ROWS_FILE) -> None:
    document = {"format": FORMAT, "rows": {name: encode(row) for name, row in rows.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def load(path: Path = ROWS_FILE) -> dict[str, Row]:
    """The committed rows, by row name; nothing if there is no file. A file that cannot be read raises
    RowsFileError naming it (a merge must not quietly report fewer rows)."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text())
        if document.get("format") != FORMAT:
            raise RowsFileError(f"format {document.get('format')!r}, this code reads {FORMAT}")
        rows = {str(name): decode(row) for name, row in document["rows"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise RowsFileError(f"{path}: cannot be read as benchmark rows: {error}") from error
    for name, row in rows.items():
        if not isinstance(row, Row):
            raise RowsFileError(f"{path}: row {name!r} is not a Row")
    return rows
