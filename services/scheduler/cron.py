"""Cron expressions read in an IANA time zone, as UTC instants (pure logic, no I/O).

croniter walks the *wall clock* of the job's zone (naive local times); each local time is then
placed on the UTC time line. Daylight-saving changes follow these rules (see the README):

* A local time that does not exist (spring forward, e.g. 02:30 on the last Sunday of March in
  Europe/Paris) fires once, shifted forward by the gap: 02:30 → 03:30 CEST. Several shifted
  times that land on the same instant fire once.
* A local time that happens twice (fall back, e.g. 02:30 on the last Sunday of October) fires
  once, at its first occurrence (CEST) — for a job with a fixed hour. A job whose hour field is
  ``*`` (every N minutes, hourly) keeps its interval through the repeated hour and fires in both
  passes, like Vixie cron.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

__all__ = ["CronSchedule", "jitter_delay"]

_DAY = timedelta(days=1)
# Any instant: a cron has no year field, so one that fires at all fires in every 28-year cycle.
_VALIDATION_START = datetime(2000, 1, 1, tzinfo=UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r} (expected an IANA name such as "
                         "'Europe/Paris')") from error


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    time_zone: str
    zone: ZoneInfo = field(init=False, repr=False, compare=False)
    repeats_hourly: bool = field(init=False, repr=False, compare=False)
    _walker: croniter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = self.expression.split()
        if len(fields) != 5:
            raise ValueError(f"invalid cron {self.expression!r}: expected 5 fields "
                             "(minute hour day-of-month month day-of-week)")
        if not croniter.is_valid(self.expression):
            raise ValueError(f"invalid cron {self.expression!r}")
        object.__setattr__(self, "zone", _zone(self.time_zone))
        object.__setattr__(self, "repeats_hourly", fields[1] == "*" or fields[1].startswith("*/"))
        object.__setattr__(self, "_walker", croniter(self.expression, datetime(2000, 1, 1)))
        # A valid expression may name a date that never comes ("0 0 30 2 *"); croniter tells
        # only when asked for the next time, which the engine does at start: ask now instead.
        try:
            self.next_after(_VALIDATION_START)
        except CroniterBadDateError:
            raise ValueError(f"{self.expression!r} never fires (no date matches its day and "
                             "month fields)") from None

    # -- placing local wall-clock times on the UTC line ---------------------------------------
    def _instants(self, local: datetime) -> list[datetime]:
        """The UTC instants at which the naive local time ``local`` fires (zero, one or two)."""
        first = local.replace(tzinfo=self.zone, fold=0)
        second = local.replace(tzinfo=self.zone, fold=1)
        first_utc, second_utc = first.astimezone(UTC), second.astimezone(UTC)
        if first_utc == second_utc:
            return [first_utc]
        # Round trip tells a gap (the local time does not exist) from a repeated hour.
        if first_utc.astimezone(self.zone).replace(tzinfo=None) != local:
            # Gap: fold=0 reads it with the offset before the change, which lands after the gap
            # shifted by its length (02:30 CET → 03:30 CEST).
            return [first_utc]
        if self.repeats_hourly:
            return [first_utc, second_utc]
        return [first_utc]

    def _local_times(self, start: datetime) -> Iterator[datetime]:
        walker = self._walker  # parsed once; next_after runs to its end without yielding
        walker.set_current(start.replace(tzinfo=None), force=True)
        while True:
            yield walker.get_next(datetime)

    # -- queries ------------------------------------------------------------------------------
    def _offsets(self, instant: datetime) -> list[timedelta]:
        """The zone's UTC offsets a day either side of ``instant`` (a transition near it shows)."""
        return [(instant + shift).astimezone(self.zone).utcoffset() or timedelta(0)
                for shift in (-_DAY, timedelta(0), _DAY)]

    def next_after(self, instant: datetime) -> datetime:
        """The first fire instant strictly after ``instant`` (aware), in UTC."""
        instant = instant.astimezone(UTC)
        naive_instant = instant.replace(tzinfo=None)
        # A local time L fires at L - offset(L) > instant, so L > instant + the least offset.
        start = naive_instant + min(self._offsets(instant)) - timedelta(minutes=1)
        best: datetime | None = None
        latest_useful: datetime | None = None
        for local in self._local_times(start):
            if latest_useful is not None and local > latest_useful:
                break
            for candidate in self._instants(local):
                if candidate > instant and (best is None or candidate < best):
                    best = candidate
                    # Later local times fire at local - offset >= local - the largest offset:
                    # past best + that offset, none can come before best.
                    latest_useful = best.replace(tzinfo=None) + max(self._offsets(best))
        assert best is not None
        return best

    def between(self, after: datetime, until: datetime, limit: int = 100_000) -> list[datetime]:
        """Fire instants in (after, until], oldest first, at most ``limit`` of them."""
        found: list[datetime] = []
        current = after
        while len(found) < limit:
            current = self.next_after(current)
            if current > until:
                break
            found.append(current)
        return found

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone)


def jitter_delay(job: str, due: datetime, jitter: timedelta, next_due: datetime) -> timedelta:
    """The delay after ``due`` at which a job fires: pseudo-random in [0, jitter], the same on
    every replica (derived from the job and the due time), and always before ``next_due``."""
    if jitter <= timedelta(0):
        return timedelta(0)
    room = next_due - due - timedelta(seconds=1)
    ceiling = min(jitter, room)
    if ceiling <= timedelta(0):
        return timedelta(0)
    digest = hashlib.sha256(f"{job}|{due.isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(seconds=round(ceiling.total_seconds() * fraction, 3))

