"""TimeEntry messages from what the stores hold, and the times they carry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from syncsuite.timeentries.v1 import timeentries_service_pb2 as pb

from services.timeentries.hot_store import HotEntry
from shared.paging import encode_page_token

__all__ = ["entry_message", "hot_page", "now_iso"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def _stamp(iso: str) -> Timestamp:
    """The Timestamp of a stored ISO 8601 UTC time (integer arithmetic, no float rounding)."""
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Timestamp(seconds=(moment - _EPOCH) // _SECOND, nanos=moment.microsecond * 1000)


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


def entry_message(hot: HotEntry) -> pb.TimeEntry:
    entry = hot.entry
    return pb.TimeEntry(
        entry_id=entry.id, project_id=entry.project_id, date=entry.date,
        duration_minutes=entry.minutes, description=entry.description, billable=entry.billable,
        create_time=_stamp(entry.create_time), update_time=_stamp(entry.update_time),
        version=entry.version,
        sync_state=pb.SYNC_STATE_SYNCED if hot.synced else pb.SYNC_STATE_PENDING,
    )
