"""Conversions between datetimes and protobuf Timestamps/Durations (always UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["duration", "from_timestamp", "timestamp", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp(value: datetime | None) -> Timestamp | None:
    """A Timestamp for an aware datetime (naive ones are taken as UTC); None stays None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def duration(value: timedelta | float) -> Duration:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    result = Duration()
    result.FromNanoseconds(int(seconds * 1e9))
    return result
