"""shared.wire: hand-written encodings parse back as protobuf does, and serialized answers pass
through the interceptor's serializer untouched."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from syncsuite.diagnostics.v1 import diagnostics_pb2
from syncsuite.pricing.v1 import pricing_service_pb2

from shared.wire import FIXED64, encode_double, field_key, length_delimited, passing_bytes, varint


@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
    (2**63, b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"),
])
def test_varint(value: int, encoded: bytes) -> None:
    assert varint(value) == encoded


def test_negative_varint_is_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        varint(-1)


def test_fields_written_by_hand_parse_like_protobuf_writes_them() -> None:
    stamp = Timestamp(seconds=1_700_000_000, nanos=5)
    expected = diagnostics_pb2.PingResponse(payload="p" * 200, service="svc", server_time=stamp)
    by_hand = (length_delimited(1, b"p" * 200) + length_delimited(2, b"svc")
               + length_delimited(3, stamp.SerializeToString()))
    assert diagnostics_pb2.PingResponse.FromString(by_hand) == expected
    # a field appended after the others (here: a double) is read as part of the message
    assert field_key(12, FIXED64) == b"\x61" and len(encode_double(1.5)) == 8
    kept = pricing_service_pb2.VariantPrice(product_id="p1", lowest_ask="120").SerializeToString()
    aged = pricing_service_pb2.VariantPrice.FromString(
        kept + field_key(12, FIXED64) + encode_double(2.75))
    assert aged == pricing_service_pb2.VariantPrice(product_id="p1", lowest_ask="120",
                                                    age_seconds=2.75)


def test_serialized_answers_pass_and_messages_are_serialized() -> None:
    serialize = passing_bytes(diagnostics_pb2.PingResponse.SerializeToString)
    assert serialize is not None
    message = diagnostics_pb2.PingResponse(service="svc")
    assert serialize(message) == message.SerializeToString()
    assert serialize(b"\x12\x03svc") == b"\x12\x03svc"
    assert passing_bytes(None) is None
