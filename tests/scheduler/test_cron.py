"""Cron maths in a time zone, across daylight-saving changes (pure logic, no I/O)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from services.scheduler.cron import CronSchedule, jitter_delay

PARIS = "Europe/Paris"
# 2025: clocks go 02:00 → 03:00 on Sunday 30 March, 03:00 → 02:00 on Sunday 26 October.
SPRING = (datetime(2025, 3, 29, 12, tzinfo=UTC), datetime(2025, 4, 1, 12, tzinfo=UTC))
FALL = (datetime(2025, 10, 25, 12, tzinfo=UTC), datetime(2025, 10, 28, 12, tzinfo=UTC))


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "window", "expected"),
    [
        # 23:00 Paris stays 23:00 local: 22:00 UTC in winter, 21:00 UTC in summer.
        ("0 23 * * *", SPRING, [_utc(2025, 3, 29, 22), _utc(2025, 3, 30, 21),
                                _utc(2025, 3, 31, 21)]),
        ("0 23 * * *", FALL, [_utc(2025, 10, 25, 21), _utc(2025, 10, 26, 22),
                              _utc(2025, 10, 27, 22)]),
        # 02:30 does not exist on 30 March: it fires once, shifted by the gap, at 03:30 CEST.
        ("30 2 * * *", SPRING, [_utc(2025, 3, 30, 1, 30), _utc(2025, 3, 31, 0, 30),
                                _utc(2025, 4, 1, 0, 30)]),
        # 02:30 happens twice on 26 October: it fires once, at the first (CEST) occurrence.
        ("30 2 * * *", FALL, [_utc(2025, 10, 26, 0, 30), _utc(2025, 10, 27, 1, 30),
                              _utc(2025, 10, 28, 1, 30)]),
    ],
    ids=["23h-spring", "23h-fall", "0230-spring", "0230-fall"],
)
def test_paris_jobs_fire_once_a_day_across_dst(
    cron: str, window: tuple[datetime, datetime], expected: list[datetime]
) -> None:
    schedule = CronSchedule(cron, PARIS)
    fired = schedule.between(*window)
    assert fired == expected
    hours = {schedule.local(instant).strftime("%H:%M") for instant in fired}
    if cron == "0 23 * * *":
        assert hours == {"23:00"}
    else:
        assert hours == ({"02:30", "03:30"} if window == SPRING else {"02:30"})


def test_interval_job_keeps_its_interval_through_both_changes() -> None:
    schedule = CronSchedule("*/15 * * * *", PARIS)
    for start, end in (SPRING, FALL):
        fired = schedule.between(start, end)
        gaps = {later - earlier for earlier, later in itertools.pairwise(fired)}
        assert gaps == {timedelta(minutes=15)}  # no hole, no double fire
        assert len(fired) == len(set(fired))


def test_next_after_is_strictly_after_and_from_inside_the_repeated_hour() -> None:
    schedule = CronSchedule("30 2 * * *", PARIS)
    first = _utc(2025, 10, 26, 0, 30)
    assert schedule.next_after(first - timedelta(seconds=1)) == first
    # Inside the second 02:00-03:00 pass (CET): the repeated 02:30 does not fire again.
    assert schedule.next_after(_utc(2025, 10, 26, 1, 10)) == _utc(2025, 10, 27, 1, 30)


def test_utc_and_other_zones() -> None:
    assert CronSchedule("0 0 * * *", "UTC").next_after(_utc(2025, 1, 1, 0, 0)) == _utc(
        2025, 1, 2)
    # New York changes on other days (9 March 2025): 23:00 local is 04:00 then 03:00 UTC.
    ny = CronSchedule("0 23 * * *", "America/New_York")
    assert ny.between(_utc(2025, 3, 8, 12), _utc(2025, 3, 10, 12)) == [
        _utc(2025, 3, 9, 4), _utc(2025, 3, 10, 3)]


@pytest.mark.parametrize(
    ("cron", "zone", "message"),
    [("61 * * * *", "UTC", "invalid cron"), ("* * *", "UTC", "expected 5 fields"),
     ("0 23 * * *", "Europe/Atlantis", "unknown time zone"), ("0 23 * * *", "", "unknown"),
     # Valid fields, but no such date: refused here rather than when the engine asks.
     ("0 0 30 2 *", "UTC", "never fires"), ("0 0 31 4 *", "Europe/Paris", "never fires")],
)
def test_invalid_schedules_say_why(cron: str, zone: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CronSchedule(cron, zone)


def test_jitter_is_stable_and_never_reaches_the_next_due_time() -> None:
    due = _utc(2025, 1, 1, 0, 0)
    delays = {jitter_delay(f"job-{n}", due, timedelta(minutes=10), due + timedelta(minutes=15))
              for n in range(200)}
    assert all(timedelta(0) <= delay <= timedelta(minutes=10) for delay in delays)
    assert len(delays) > 100  # spread, not one value
    # A jitter longer than the interval is capped before the next due time.
    tight = [jitter_delay(f"job-{n}", due, timedelta(hours=1), due + timedelta(minutes=1))
             for n in range(200)]
    assert all(delay < timedelta(minutes=1) for delay in tight)
    assert jitter_delay("a", due, timedelta(minutes=5), due + timedelta(hours=1)) == (
        jitter_delay("a", due, timedelta(minutes=5), due + timedelta(hours=1)))
    assert jitter_delay("a", due, timedelta(0), due + timedelta(hours=1)) == timedelta(0)
