"""Conversions between protobuf messages and cache entries, in one place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from config_service.cache import Entry, ValueType
from configrefresh.v1 import config_service_pb2, refresh_service_pb2

_TO_PROTO = {
    ValueType.STRING: refresh_service_pb2.VALUE_TYPE_STRING,
    ValueType.STRING_LIST: refresh_service_pb2.VALUE_TYPE_STRING_LIST,
    ValueType.SECURE_STRING: refresh_service_pb2.VALUE_TYPE_SECURE_STRING,
}


def value_type_from_proto(number: int) -> ValueType:
    """UNSPECIFIED (and anything unknown) is treated as String, as the contract says."""
    for member, proto_number in _TO_PROTO.items():
        if proto_number == number:
            return member
    return ValueType.STRING


def value_type_to_proto(value_type: ValueType) -> refresh_service_pb2.ValueType.ValueType:
    """The protobuf enum number of a value type."""
    return _TO_PROTO[value_type]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_to_datetime(stamp: Timestamp) -> datetime | None:
    """An unset Timestamp (all zero) is None.

    Integer arithmetic, exact to the microsecond as protobuf's own ToDatetime (which is pure Python and
    several times slower: this runs once per refresh, on the loop that answers reads)."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def datetime_to_timestamp(moment: datetime | None) -> Timestamp | None:
    """None stays unset; a naive datetime is taken as UTC (as protobuf's FromDatetime does)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        stamp = Timestamp()
        stamp.FromDatetime(moment)
        return stamp
    delta = moment - _EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def entry_to_proto(entry: Entry) -> config_service_pb2.ConfigEntry:
    """The read API's view of an entry."""
    return config_service_pb2.ConfigEntry(
        name=entry.name,
        value=entry.value,
        version=entry.version,
        last_modified=datetime_to_timestamp(entry.last_modified),
        value_type=value_type_to_proto(entry.value_type),
    )


def entry_to_state(entry: Entry) -> refresh_service_pb2.ParameterState:
    """GetState's view of an entry (no value)."""
    return refresh_service_pb2.ParameterState(
        name=entry.name,
        version=entry.version,
        last_modified=datetime_to_timestamp(entry.last_modified),
        deleted=entry.deleted,
        loaded_at=datetime_to_timestamp(entry.loaded_at),
    )
