"""The generated protobuf types carry every field of the contract through a wire round trip."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from configrefresh.v1 import config_service_pb2 as cs
from configrefresh.v1 import refresh_service_pb2 as rs


def _ts(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


def test_refresh_request_round_trips_every_field() -> None:
    request = rs.RefreshRequest(
        refresh_id="orders-1a2b3c4d-v7-9f8e",
        parameter_name="/config-service/acme/orders/db_url",
        version=7,
        last_modified=_ts(1_790_000_000, 123_000_000),
        operation=rs.OPERATION_UPSERT,
        payload_mode=rs.PAYLOAD_MODE_VALUE,
        value="postgres://db.acme:5432/orders",
        value_type=rs.VALUE_TYPE_SECURE_STRING,
        scope={"tenant": "acme", "service": "orders"},
        committed_at=_ts(1_790_000_000, 500_000_000),
    )
    decoded = rs.RefreshRequest.FromString(request.SerializeToString())
    assert decoded == request
    assert decoded.scope["tenant"] == "acme"
    assert decoded.last_modified.nanos == 123_000_000
    assert {field.name for field in decoded.DESCRIPTOR.fields} == {
        "refresh_id", "parameter_name", "version", "last_modified", "operation", "payload_mode",
        "value", "value_type", "scope", "committed_at",
    }  # fmt: skip
    assert len(decoded.ListFields()) == len(decoded.DESCRIPTOR.fields)


def test_refresh_response_round_trips_every_field() -> None:
    response = rs.RefreshResponse(
        result=rs.REFRESH_RESULT_STALE, applied_version=9, instance_id="orders-7d9f", message="holds v9"
    )
    decoded = rs.RefreshResponse.FromString(response.SerializeToString())
    assert decoded == response
    assert len(decoded.ListFields()) == len(decoded.DESCRIPTOR.fields)


def test_get_state_round_trips_every_field() -> None:
    state = rs.GetStateResponse(
        instance_id="orders-7d9f",
        started_at=_ts(1_790_000_000),
        parameters=[
            rs.ParameterState(
                name="/config-service/acme/orders/db_url",
                version=3,
                last_modified=_ts(1_790_000_001),
                deleted=True,
                loaded_at=_ts(1_790_000_002),
            )
        ],
    )
    decoded = rs.GetStateResponse.FromString(state.SerializeToString())
    assert decoded == state
    assert len(decoded.parameters[0].ListFields()) == len(rs.ParameterState.DESCRIPTOR.fields)
    assert (
        rs.GetStateRequest.FromString(rs.GetStateRequest(name_prefix="/a/").SerializeToString()).name_prefix
        == "/a/"
    )


def test_config_service_messages_round_trip_every_field() -> None:
    entry = cs.ConfigEntry(
        name="/config-service/acme/orders/timeout",
        value="30",
        version=2,
        last_modified=_ts(1_790_000_000),
        value_type=rs.VALUE_TYPE_STRING,
    )
    assert len(entry.ListFields()) == len(cs.ConfigEntry.DESCRIPTOR.fields)
    listing = cs.ListConfigResponse(entries=[entry], next_page_token="tok")
    assert cs.ListConfigResponse.FromString(listing.SerializeToString()) == listing
    request = cs.ListConfigRequest(prefix="/config-service/", page_size=50, page_token="tok")
    assert cs.ListConfigRequest.FromString(request.SerializeToString()) == request
    got = cs.GetConfigResponse(entry=entry)
    assert cs.GetConfigResponse.FromString(got.SerializeToString()).entry == entry


def test_every_enum_starts_with_unspecified_zero() -> None:
    for enum in (rs.Operation, rs.PayloadMode, rs.ValueType, rs.RefreshResult):
        # The descriptor's number-to-value table, which `Name` reads: the enums' `Name` methods each take
        # their own ValueType, so the loop over all four has no argument type that fits every one.
        zero = enum.DESCRIPTOR.values_by_number[0].name
        assert zero.endswith("_UNSPECIFIED"), zero
