"""Search answers kept serialized.

A serialized protobuf message is its fields one after another, and two serialized messages of
one type joined are the message holding both's fields (repeated fields appended in order). So
a search answer is kept as the bytes of its page of records (each record's bytes made once per
index), its page token and its total; each call joins the bytes of its own provenance (the
data's age changes from call to call), and gRPC sends the result as it is (the shared
interceptor lets serialized answers through: see shared/wire.py).
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import Message

from services.catalog.records import Record

__all__ = ["record_bytes"]


def record_bytes(response: type[Message], field: str, build: Callable[[Record], Message],
                 record: Record) -> bytes:
    """``record`` as the serialized ``field`` (a repeated message field) of ``response``."""
    return response(**{field: [build(record)]}).SerializeToString()
