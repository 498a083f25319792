"""Timestamps between protobuf and datetime: the service's own arithmetic agrees with protobuf's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from config_service.convert import datetime_to_timestamp, timestamp_to_datetime

MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 1, 0, 0, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(MOMENTS)
def test_a_datetime_converts_as_protobuf_converts_it_and_back(moment: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(moment)
    stamp = datetime_to_timestamp(moment)
    assert stamp == expected
    assert timestamp_to_datetime(stamp) == expected.ToDatetime(tzinfo=UTC) == moment


@given(st.integers(min_value=1, max_value=7_000_000_000), st.integers(min_value=0, max_value=999_999_999))
def test_nanoseconds_are_cut_to_microseconds_as_protobuf_does(seconds: int, nanos: int) -> None:
    stamp = Timestamp(seconds=seconds, nanos=nanos)
    assert timestamp_to_datetime(stamp) == stamp.ToDatetime(tzinfo=UTC)


def test_unset_stays_unset_and_other_zones_and_naive_times_mean_the_same_instant() -> None:
    assert timestamp_to_datetime(Timestamp()) is None
    assert datetime_to_timestamp(None) is None
    plus_two = datetime(2026, 11, 26, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    naive_utc = datetime(2026, 11, 26, 10, 0)
    stamp = datetime_to_timestamp(plus_two)
    assert stamp is not None
    assert stamp == datetime_to_timestamp(naive_utc)
    assert timestamp_to_datetime(stamp) == datetime(2026, 11, 26, 10, tzinfo=UTC)
