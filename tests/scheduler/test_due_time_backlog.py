"""Which past due times a replica records when it starts or ticks late: a job enabled again or
given a new schedule starts from then (no false MISSED rows), and a backlog of exactly one
batch still fires its latest, on-time due time. Real PostgreSQL and target, injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.scheduler.engine import MAX_DUE_TIMES_PER_TICK, Scheduler
from tests.scheduler.conftest import ManualClock, jobs_from


async def _statuses(pool: asyncpg.Pool, job: str) -> list[tuple[datetime, str]]:
    rows = await pool.fetch("SELECT scheduled_time, status FROM scheduler.runs WHERE job = $1"
                            " ORDER BY scheduled_time", job)
    return [(row["scheduled_time"], row["status"]) for row in rows]


async def _tick_and_finish(engine: Scheduler) -> None:
    tasks = await engine.tick()
    if tasks:
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def test_a_job_enabled_again_does_not_record_its_disabled_time_as_missed(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str],
) -> None:
    name = job_name("re-enabled")
    fields = {"target": probe_address, "scope": "quick", "cron": "*/15 * * * *"}
    clock = ManualClock(datetime(2025, 1, 1, tzinfo=UTC))
    disabled = make_engine(jobs_from({name: {**fields, "enabled": False}}), clock,
                           replica="while-disabled")
    await disabled.start()
    await disabled.stop()

    clock.set(datetime(2025, 3, 1, 0, 0, 5, tzinfo=UTC))  # enabled two months later
    enabled = make_engine(jobs_from({name: fields}), clock, replica="once-enabled")
    await _tick_and_finish(enabled)
    assert await _statuses(scheduler_pool, name) == []
    clock.set(datetime(2025, 3, 1, 0, 15, 1, tzinfo=UTC))
    await _tick_and_finish(enabled)
    assert await _statuses(scheduler_pool, name) == [
        (datetime(2025, 3, 1, 0, 15, tzinfo=UTC), "SUCCEEDED")]


@pytest.mark.parametrize(
    "change", [{"cron": "30 * * * *"}, {"time_zone": "Asia/Kolkata"}], ids=["cron", "time-zone"])
async def test_a_new_schedule_starts_from_the_restart(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str], change: dict[str, Any],
) -> None:
    name = job_name("rescheduled")
    fields = {"target": probe_address, "scope": "quick", "cron": "0 * * * *",
              "time_zone": "UTC"}
    clock = ManualClock(datetime(2025, 1, 10, 10, 10, tzinfo=UTC))
    before = make_engine(jobs_from({name: fields}), clock, replica="old-schedule")
    await before.start()
    await before.stop()

    # Restarted three hours later with a schedule firing at half past (UTC): its 10:30, 11:30
    # and 12:30 were never due times of this job.
    clock.set(datetime(2025, 1, 10, 13, 20, tzinfo=UTC))
    after = make_engine(jobs_from({name: {**fields, **change}}), clock, replica="new-schedule")
    await _tick_and_finish(after)
    assert await _statuses(scheduler_pool, name) == []
    clock.set(datetime(2025, 1, 10, 13, 30, 1, tzinfo=UTC))
    await _tick_and_finish(after)
    assert await _statuses(scheduler_pool, name) == [
        (datetime(2025, 1, 10, 13, 30, tzinfo=UTC), "SUCCEEDED")]


@pytest.mark.parametrize("backlog", [MAX_DUE_TIMES_PER_TICK, MAX_DUE_TIMES_PER_TICK + 1],
                         ids=["one-batch", "one-more"])
async def test_the_latest_due_time_of_a_full_batch_fires_on_time(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str], backlog: int,
) -> None:
    name = job_name("backlog")
    specs = jobs_from({name: {"target": probe_address, "scope": "quick", "cron": "* * * * *"}})
    start = datetime(2025, 1, 10, 0, 0, 30, tzinfo=UTC)
    clock = ManualClock(start)
    engine = make_engine(specs, clock, replica="after-the-outage")
    await engine.start()
    # Down for `backlog` minutely due times; back 5 s after the latest, which is on time.
    clock.set(start + timedelta(minutes=backlog, seconds=-25))
    for _ in range(2):  # a batch per tick
        await _tick_and_finish(engine)

    statuses = await _statuses(scheduler_pool, name)
    assert len(statuses) == backlog
    assert [status for _, status in statuses] == ["MISSED"] * (backlog - 1) + ["SUCCEEDED"]
    assert statuses[-1][0] == start.replace(second=0) + timedelta(minutes=backlog)
