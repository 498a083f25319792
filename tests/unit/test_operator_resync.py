"""Resync decisions: which store state counts as a missed change, and what the objects say per parameter."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from refresh_operator.ordering import Operation, VersionKey
from refresh_operator.parameter_store import ParameterSnapshot, hierarchy_path
from refresh_operator.resync import Known, is_missed, known_versions

T0 = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def snapshot(version: int, modified: datetime.datetime) -> ParameterSnapshot:
    return ParameterSnapshot(
        name="/app/a",
        operation=Operation.UPSERT,
        version=version,
        last_modified=modified,
        value_type="String",
    )


def obj(
    version: int | None, modified: str | None, phase: str | None, operation: str = "Upsert"
) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": "/app/a", "operation": operation}
    if version is not None:
        parameter["version"] = version
    if modified is not None:
        parameter["lastModified"] = modified
    return {
        "metadata": {"annotations": {"configrefresh.io/parameter-name": "/app/a"}},
        "spec": {"parameter": parameter},
        "status": {"phase": phase} if phase else {},
    }


@pytest.mark.parametrize(
    ("prefix", "path"),
    [("/app/", "/app"), ("/app/ord", "/app"), ("/a/b/c/", "/a/b/c"), ("/app", "/")],
)
def test_a_route_prefix_is_listed_from_its_last_whole_path_segment(prefix: str, path: str) -> None:
    assert hierarchy_path(prefix) == path


def test_the_newest_object_per_parameter_wins_and_a_running_one_marks_it_busy() -> None:
    known = known_versions(
        [
            obj(2, "2026-11-26T10:00:02.000000Z", "Succeeded"),
            obj(3, "2026-11-26T10:00:03.000000Z", "InProgress"),
            obj(1, "2026-11-26T10:00:01.000000Z", "Succeeded"),
            obj(None, None, None),
        ]
    )
    assert known["/app/a"].newest == VersionKey(at(3), 3)
    assert known["/app/a"].busy


def test_a_deletion_is_version_zero_at_its_time() -> None:
    known = known_versions([obj(None, "2026-11-26T10:00:05.000000Z", "Succeeded", operation="Delete")])
    assert known["/app/a"] == Known(newest=VersionKey(at(5), 0), operation=Operation.DELETE, busy=False)


def rule(state: ParameterSnapshot, known: Known | None, *, now: float = 100, created: float = 0) -> bool:
    return is_missed(
        state, known, now=at(now), grace_seconds=10, route_created=at(created), retention_seconds=3600
    )


def test_a_newer_store_version_than_every_object_is_missed() -> None:
    assert rule(snapshot(4, at(50)), Known(newest=VersionKey(at(40), 3), operation=Operation.UPSERT))


def test_the_version_an_object_covers_is_not_missed() -> None:
    assert not rule(snapshot(3, at(40)), Known(newest=VersionKey(at(40), 3), operation=Operation.UPSERT))


def test_a_change_inside_the_grace_period_waits_for_its_event() -> None:
    assert not rule(snapshot(4, at(95)), Known(newest=VersionKey(at(40), 3), operation=Operation.UPSERT))


def test_a_parameter_older_than_the_route_without_objects_is_baseline_not_missed() -> None:
    assert not rule(snapshot(1, at(5)), None, created=10)


def test_a_parameter_written_after_the_route_without_objects_is_missed() -> None:
    assert rule(snapshot(1, at(50)), None, created=10)


def test_a_parameter_older_than_retention_without_objects_was_cleaned_up_not_missed() -> None:
    assert not rule(snapshot(1, at(50)), None, now=50 + 3601, created=10)
