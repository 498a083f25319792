"""Resync decisions: which store state counts as a missed change, and what the objects say per parameter."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from configrefresh_api.naming import refresh_name
from configrefresh_api.versions import Operation, VersionKey
from refresh_operator.antientropy import is_behind, settled
from refresh_operator.fanout.states import Held
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


def held(version: int, modified: datetime.datetime, *, deleted: bool = False) -> Held:
    return Held(key=VersionKey(modified, version), deleted=deleted)


def test_an_instance_missing_the_parameter_is_behind() -> None:
    assert is_behind(None, snapshot(1, at(1)))


def test_an_instance_on_an_older_version_is_behind_and_one_on_the_same_version_is_not() -> None:
    assert is_behind(held(1, at(1)), snapshot(2, at(2)))
    assert not is_behind(held(2, at(2)), snapshot(2, at(2)))


def test_sub_millisecond_differences_in_the_timestamp_are_not_a_lag() -> None:
    assert not is_behind(held(2, at(2.0004)), snapshot(2, at(2)))


def test_an_instance_still_holding_a_deleted_parameter_is_behind() -> None:
    deletion = ParameterSnapshot(
        name="/app/a", operation=Operation.DELETE, version=0, last_modified=at(9), value_type="String"
    )
    assert is_behind(held(2, at(2)), deletion)
    assert not is_behind(held(0, at(9), deleted=True), deletion)
    assert not is_behind(None, deletion)


def test_anti_entropy_waits_for_running_rollouts_and_uncovered_changes() -> None:
    covered = Known(newest=VersionKey(at(5), 5), operation=Operation.UPSERT)
    assert settled(snapshot(5, at(5)), covered, at(6), 10)
    assert not settled(snapshot(6, at(6)), covered, at(100), 10), "no rollout of v6 yet: leave it"
    running = Known(newest=VersionKey(at(5), 5), operation=Operation.UPSERT, busy=True)
    assert not settled(snapshot(5, at(5)), running, at(100), 10)
    assert settled(snapshot(1, at(5)), None, at(100), 10)
    assert not settled(snapshot(1, at(95)), None, at(100), 10)


def test_a_repair_name_is_a_dns_label_apart_from_the_rollout_of_the_same_version() -> None:
    route = "a-very-long-route-name-that-fills-most-of-the-dns-label-budget"
    plain = refresh_name(route=route, parameter_name="/app/a", version=3, last_modified=at(3))
    first = refresh_name(
        route=route, parameter_name="/app/a", version=3, last_modified=at(3), repair="t1 i-1"
    )
    second = refresh_name(
        route=route, parameter_name="/app/a", version=3, last_modified=at(3), repair="t2 i-1"
    )
    assert len({plain, first, second}) == 3
    assert all(
        len(name) <= 63 and name[0].isalnum() and name[-1].isalnum() for name in (plain, first, second)
    )
