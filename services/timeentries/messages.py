"""TimeEntry messages from what the stores hold, and the times they carry."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from google.protobuf.timestamp_pb2 import Timestamp
from syncsuite.timeentries.v1 import timeentries_service_pb2 as pb

from services.timeentries.hot_store import HotEntry
from shared.paging import encode_page_token

__all__ = ["Moment", "entry_message", "hot_page", "moment_now", "set_entry"]


class Moment(NamedTuple):
    """A moment as entries store it (ISO 8601, UTC, to the microsecond) and as a Timestamp's
    fields."""

    iso: str
    seconds: int
    nanos: int


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


_second: tuple[int, str] = (-1, "")  # the last second formatted, without its offset


def moment_now() -> Moment:
    """Now, to the microsecond; its text is ``datetime.isoformat()``'s, with the part up to the
    second formatted once a second."""
    global _second
    seconds, micro = divmod(time.time_ns() // 1000, 1_000_000)
    if seconds != _second[0]:
        _second = (seconds, (_EPOCH + timedelta(seconds=seconds)).isoformat()[:-6])
    text = f"{_second[1]}.{micro:06d}+00:00" if micro else f"{_second[1]}+00:00"
    return Moment(text, seconds, micro * 1000)


def _stamp(iso: str) -> Timestamp:
    """The Timestamp of a stored ISO 8601 UTC time (integer arithmetic, no float rounding)."""
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Timestamp(seconds=(moment - _EPOCH) // _SECOND, nanos=moment.microsecond * 1000)


def _set_time(field: Timestamp, iso: str, known: Moment | None) -> None:
    if known is not None and iso == known.iso:
        field.seconds = known.seconds
        field.nanos = known.nanos
    else:
        field.CopyFrom(_stamp(iso))


def _row_message(row: dict[str, str]) -> pb.TimeEntry:
    """The message of an entry hash as the list script returns it (all values strings)."""
    return pb.TimeEntry(
        entry_id=row["id"], project_id=row["project_id"], date=row["date"],
        duration_minutes=int(row["minutes"]), description=row["description"],
        billable=row["billable"] == "1", create_time=_stamp(row["create_time"]),
        update_time=_stamp(row["update_time"]), version=int(row["version"]),
        sync_state=pb.SYNC_STATE_SYNCED if row.get("synced") == "1" else pb.SYNC_STATE_PENDING,
    )


def hot_page(
    rows: list[dict[str, str]], email: str, cursor: tuple[str, str] | None, size: int
) -> pb.ListTimeEntriesResponse:
    """A page of a range Redis holds completely (``rows`` in (date, id) order)."""
    if cursor is not None:
        rows = [row for row in rows if (row["date"], row["id"]) > cursor]
    page = [row for row in rows if row["email"] == email][:size + 1]
    token = ""
    if len(page) > size:
        page = page[:size]
        token = encode_page_token({"d": page[-1]["date"], "i": page[-1]["id"]})
    return pb.ListTimeEntriesResponse(entries=[_row_message(row) for row in page],
                                      next_page_token=token)


def set_entry(message: pb.TimeEntry, hot: HotEntry, now: Moment | None = None) -> pb.TimeEntry:
    """Fills ``message`` (e.g. a response's ``entry``, so that nothing is copied) with ``hot``
    and returns it. ``now``: the moment of the write that gave ``hot`` (a stored time equal to
    it is not parsed again)."""
    entry = hot.entry
    message.entry_id = entry.id
    message.project_id = entry.project_id
    message.date = entry.date
    message.duration_minutes = entry.minutes
    message.description = entry.description
    message.billable = entry.billable
    _set_time(message.create_time, entry.create_time, now)
    _set_time(message.update_time, entry.update_time, now)
    message.version = entry.version
    message.sync_state = pb.SYNC_STATE_SYNCED if hot.synced else pb.SYNC_STATE_PENDING
    return message


def entry_message(hot: HotEntry) -> pb.TimeEntry:
    return set_entry(pb.TimeEntry(), hot)
