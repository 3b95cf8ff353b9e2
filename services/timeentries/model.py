"""Time entries as the service sees them, and the checks every write goes through."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from typing import Any

from shared.errors import InvalidArgument

__all__ = [
    "MAX_MINUTES",
    "Entry",
    "Limits",
    "new_entry_id",
    "parse_date",
    "parse_entry_id",
    "utc_today",
    "validate_fields",
]

MAX_MINUTES = 24 * 60
MAX_REQUEST_ID = 128
MAX_PROJECT_ID = 64


@dataclass(frozen=True)
class Limits:
    max_past_days: int = 366
    max_future_days: int = 1
    max_description: int = 2000


@dataclass(frozen=True)
class Entry:
    """One version of a time entry (the outbox carries exactly this, as JSON)."""

    id: str
    email: str
    project_id: str
    date: str  # YYYY-MM-DD
    minutes: int
    description: str
    billable: bool
    version: int
    deleted: bool
    create_time: str  # ISO 8601, UTC
    update_time: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Entry:
        return cls.from_mapping(json.loads(text))

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Entry:
        return cls(
            id=str(data["id"]), email=str(data["email"]), project_id=str(data["project_id"]),
            date=str(data["date"]), minutes=int(data["minutes"]),
            description=str(data["description"]), billable=_truthy(data["billable"]),
            version=int(data["version"]), deleted=_truthy(data["deleted"]),
            create_time=str(data["create_time"]), update_time=str(data["update_time"]),
        )

    @property
    def day(self) -> date:
        return date.fromisoformat(self.date)

    def with_changes(self, **changes: Any) -> Entry:
        return replace(self, **changes)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value in ("1", "true", "True")
    return bool(value)


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_today: tuple[int, date] = (0, date(1970, 1, 1))


def utc_today() -> date:
    """Today in UTC, as ``datetime.now(UTC).date()`` but cheaper: the date is built once a
    day (Unix time counts 86,400 s a day, so its day number is the UTC date's)."""
    global _today
    day = int(time.time() // 86400)
    if day != _today[0]:
        _today = (day, date.fromordinal(_EPOCH_ORDINAL + day))
    return _today[1]


def parse_date(field: str, text: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(field, f"must be a date as YYYY-MM-DD, got {text[:20]!r}") from None


def new_entry_id() -> str:
    """A random (version 4) UUID's text."""
    return str(uuid.uuid4())


def parse_entry_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidArgument("entry_id", "must be a UUID") from None


def validate_fields(
    limits: Limits,
    *,
    project_id: str | None = None,
    day: str | None = None,
    minutes: int | None = None,
    description: str | None = None,
    request_id: str | None = None,
    today: date | None = None,
) -> date | None:
    """Checks the fields given (None = not part of this write); the parsed date if given."""
    parsed: date | None = None
    if project_id is not None:
        if not project_id.strip():
            raise InvalidArgument("project_id", "is required")
        if len(project_id) > MAX_PROJECT_ID or not project_id.isprintable():
            raise InvalidArgument("project_id", "is not a project id")
    if day is not None:
        parsed = parse_date("date", day)
        today = today or utc_today()
        if parsed < today - timedelta(days=limits.max_past_days):
            raise InvalidArgument("date", f"must be within the last {limits.max_past_days} days")
        if parsed > today + timedelta(days=limits.max_future_days):
            raise InvalidArgument("date", "must not be in the future")
    if minutes is not None and not 0 < minutes <= MAX_MINUTES:
        raise InvalidArgument(
            "duration_minutes", f"must be more than 0 and at most {MAX_MINUTES} (24 h), "
            f"got {minutes}",
        )
    if description is not None and len(description) > limits.max_description:
        raise InvalidArgument(
            "description", f"must be at most {limits.max_description} characters, "
            f"got {len(description)}",
        )
    if request_id is not None and len(request_id) > MAX_REQUEST_ID:
        raise InvalidArgument("request_id", f"must be at most {MAX_REQUEST_ID} characters")
    return parsed
