"""Answers serialized once and sent many times.

An RPC handler may return ``bytes`` instead of its response message: the shared interceptor
(:mod:`shared.interceptor`) sends them as they are, as the serialized response. A hot read can
then keep the serialized form of its answer and skip both copying a cached message and
serializing it again on every call.

When part of an answer changes per call (an age, say), the rest can still be kept serialized:
the protobuf wire format lets a message be written as its fields' encodings one after another,
in any order, so a field encoded per call is appended to the bytes kept for the others. The
helpers below write those few pieces (field keys, lengths, doubles)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

__all__ = ["FIXED64", "LENGTH_DELIMITED", "encode_double", "field_key", "length_delimited",
           "passing_bytes", "varint"]

FIXED64: Final = 1  # double, fixed64
LENGTH_DELIMITED: Final = 2  # string, bytes, messages, packed repeated fields

encode_double: Final[Callable[[float], bytes]] = struct.Struct("<d").pack


def varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varint() encodes non-negative integers only")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field_key(number: int, wire_type: int) -> bytes:
    """The key that starts field ``number``'s encoding."""
    return varint(number << 3 | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    """Field ``number`` holding ``payload`` (a serialized message, a string's UTF-8 bytes)."""
    return field_key(number, LENGTH_DELIMITED) + varint(len(payload)) + payload


def passing_bytes(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """``serializer``, except that a response already serialized (``bytes``) goes as it is."""
    if serializer is None:
        return None

    def serialize(response: Any) -> bytes:
        return response if type(response) is bytes else serializer(response)

    return serialize
