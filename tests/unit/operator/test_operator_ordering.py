"""Versions are ordered by (LastModifiedDate, Version), so a re-created parameter's version 1 wins."""

from __future__ import annotations

import datetime

import pytest

from configrefresh_api.times import canonical_time, parse_time
from configrefresh_api.versions import Operation, VersionKey, is_newer
from refresh_operator.parameter_store import ParameterStoreError, read_parameter
from tests.unit.fakes.aws import FakeSsm

T0 = datetime.datetime(2026, 11, 26, 10, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def test_delete_and_recreate_orders_by_time_not_version() -> None:
    old_v9 = VersionKey(at(0), 9)
    deleted = VersionKey(at(10), 0)
    new_v1 = VersionKey(at(20), 1)
    assert sorted([new_v1, deleted, old_v9]) == [old_v9, deleted, new_v1]
    assert is_newer(new_v1, old_v9)
    assert not is_newer(old_v9, deleted)
    assert is_newer(old_v9, None)


def test_the_version_breaks_ties_within_one_timestamp() -> None:
    assert VersionKey(at(0), 3) > VersionKey(at(0), 2)


def test_a_missing_parameter_is_a_delete_at_the_event_time() -> None:
    ssm = FakeSsm(version=None)
    snapshot = read_parameter(ssm, name="/p", with_value=True, deleted_at=at(10))
    assert snapshot.operation is Operation.DELETE
    assert snapshot.key == VersionKey(at(10), 0)
    assert snapshot.key > VersionKey(at(0), 9)


def test_a_read_asks_for_decryption_only_when_pushing_values() -> None:
    ssm = FakeSsm(
        {"Name": "/p", "Version": 4, "LastModifiedDate": at(5), "Type": "SecureString", "Value": "s3cr3t"}
    )
    pushed = read_parameter(ssm, name="/p", with_value=True, deleted_at=at(10))
    invalidated = read_parameter(ssm, name="/p", with_value=False, deleted_at=at(10))
    assert [call["WithDecryption"] for call in ssm.calls] == [True, False]
    assert pushed.value == "s3cr3t"
    assert invalidated.value is None
    assert pushed.key == VersionKey(at(5), 4)
    assert "s3cr3t" not in repr(pushed)


def test_a_failed_read_names_the_code_and_never_a_value() -> None:
    with pytest.raises(ParameterStoreError) as caught:
        read_parameter(
            FakeSsm(version=None, error="ThrottlingException"), name="/p", with_value=True, deleted_at=at(0)
        )
    assert "ThrottlingException" in str(caught.value)


def test_timestamps_have_one_canonical_text() -> None:
    text = canonical_time(at(1.5))
    assert text == "2026-11-26T10:00:01.500000Z"
    assert parse_time(text) == at(1.5)
    assert canonical_time(
        at(0).astimezone(datetime.timezone(datetime.timedelta(hours=-3)))
    ) == canonical_time(at(0))
