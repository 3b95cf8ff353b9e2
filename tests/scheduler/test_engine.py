"""Scheduler replicas against the real PostgreSQL and a real target service, driven by an
injected clock (no waiting for cron times)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from services.scheduler.engine import Scheduler, SchedulerMetrics
from shared.processes import free_port
from tests.scheduler.conftest import ManualClock, claim_as_dead_replica, jobs_from
from tests.scheduler.target_jobs import due_reasons_of, sync_jobs_by_reason

PARIS = "Europe/Paris"


def _job(name: str, address: str, **fields: Any) -> dict[str, dict[str, Any]]:
    return {name: {"target": address, "scope": "quick", "cron": "*/5 * * * *",
                   "time_zone": "UTC", **fields}}


async def _drive(engines: list[Scheduler], clock: ManualClock, until: datetime,
                 step: timedelta) -> None:
    """Ticks every replica at each step (concurrently), letting started runs end."""
    for engine in engines:
        await engine.start()  # the jobs are known from the start time
    while clock() < until:
        clock.advance(step)
        started = await asyncio.gather(*(engine.tick() for engine in engines))
        tasks = [task for group in started for task in group]
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def _rows(pool: asyncpg.Pool, job: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT scheduled_time, status, trigger, claimed_by, error, target_job_id, attempts"
        " FROM scheduler.runs WHERE job = $1 ORDER BY scheduled_time", job)


def _metric(registry: CollectorRegistry, name: str, job: str) -> float:
    return registry.get_sample_value(name, {"job": job}) or 0.0


async def test_two_replicas_fire_each_due_time_exactly_once(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str],
) -> None:
    every5, jittered = job_name("every-5"), job_name("jittered")
    specs = jobs_from({**_job(every5, probe_address),
                       **_job(jittered, probe_address, cron="*/10 * * * *", jitter="4m",
                              scope="also_shared")})
    start = datetime(2025, 1, 10, 8, 0, 30, tzinfo=UTC)
    clock = ManualClock(start)
    registries = [CollectorRegistry(), CollectorRegistry()]
    engines = [make_engine(specs, clock, replica=f"replica-{n}",
                           metrics=SchedulerMetrics(registries[n])) for n in range(2)]
    await _drive(engines, clock, start + timedelta(hours=2, minutes=4), timedelta(seconds=23))

    rows = await _rows(scheduler_pool, every5)
    expected = [start.replace(second=0) + timedelta(minutes=5 * n) for n in range(1, 25)]
    assert [row["scheduled_time"] for row in rows] == expected
    assert {row["status"] for row in rows} == {"SUCCEEDED"}
    assert len({row["target_job_id"] for row in rows}) == 24  # 24 distinct Sync calls
    # ... and the target saw exactly those: one Sync per due time, none repeated.
    for name, count in ((every5, 24), (jittered, 12)):
        synced = await sync_jobs_by_reason(probe_address, due_reasons_of(name))
        assert len(synced) == count and set(synced.values()) == {1}, name
    assert {row["claimed_by"] for row in rows} <= {"replica-0", "replica-1"}
    for name, count in ((every5, 24), (jittered, 12)):
        assert sum(_metric(r, "syncsuite_scheduler_expected_runs_total", name)
                   for r in registries) == count
        assert sum(_metric(r, "syncsuite_scheduler_actual_runs_total", name)
                   for r in registries) == count

    jitter_rows = await scheduler_pool.fetch(
        "SELECT scheduled_time, fire_time, status FROM scheduler.runs WHERE job = $1"
        " ORDER BY scheduled_time", jittered)
    assert len(jitter_rows) == 12 and {row["status"] for row in jitter_rows} == {"SUCCEEDED"}
    delays = [row["fire_time"] - row["scheduled_time"] for row in jitter_rows]
    assert all(timedelta(0) <= delay <= timedelta(minutes=4) for delay in delays)
    assert len(set(delays)) > 1


async def test_overlap_forbid_records_the_skip_and_allow_fires(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str],
) -> None:
    for policy in ("forbid", "allow"):  # one after the other: both use the probe's slow scope
        name = job_name(policy)
        specs = jobs_from(_job(name, probe_address, scope="slow", cron="* * * * *",
                               overlap=policy))
        clock = ManualClock(datetime(2025, 1, 10, 9, 0, 0, tzinfo=UTC))
        engine = make_engine(specs, clock, replica=f"overlap-{policy}")
        await engine.start()
        clock.advance(timedelta(seconds=61))
        first = await engine.tick()  # the slow (2 s) sync starts
        clock.advance(timedelta(seconds=60))
        second = await engine.tick()  # the next due time comes while it runs
        assert (len(first), len(second)) == (1, 0 if policy == "forbid" else 1)
        await asyncio.wait_for(asyncio.gather(*first, *second), 30)
        rows = await _rows(scheduler_pool, name)
        if policy == "forbid":
            assert [row["status"] for row in rows] == ["SUCCEEDED", "SKIPPED"]
            assert "overlap forbidden" in rows[1]["error"]
            tally = await engine.store.tally(name)
            assert (tally.expected, tally.ran, tally.skipped) == (2, 1, 1)
        else:
            # It did fire; the target itself refuses a second sync of a running scope.
            assert [row["status"] for row in rows] == ["SUCCEEDED", "FAILED"]
            assert "ABORTED" in rows[1]["error"]


async def test_catch_up_runs_once_at_start_within_the_window(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str],
) -> None:
    inside, outside = job_name("inside"), job_name("outside")
    specs = jobs_from({**_job(inside, probe_address, cron="0 * * * *", catch_up_window="90m"),
                       **_job(outside, probe_address, cron="0 * * * *", scope="also_shared",
                              catch_up_window="10m")})
    clock = ManualClock(datetime(2025, 1, 10, 10, 10, tzinfo=UTC))
    first = make_engine(specs, clock, replica="before-the-outage")
    await first.start()  # the jobs are known from 10:10; then the scheduler goes down
    await first.stop()

    clock.set(datetime(2025, 1, 10, 13, 20, tzinfo=UTC))  # 11:00, 12:00, 13:00 were missed
    restarted = make_engine(specs, clock, replica="after-the-outage")
    tasks = await restarted.tick()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    rows = await _rows(scheduler_pool, inside)
    assert [(row["scheduled_time"].hour, row["status"], row["trigger"]) for row in rows] == [
        (11, "MISSED", "schedule"), (12, "MISSED", "schedule"), (13, "SUCCEEDED", "catch_up")]
    assert "outside the catch-up window (1h30m)" not in rows[0]["error"]
    assert "catch-up window" in rows[0]["error"]
    rows = await _rows(scheduler_pool, outside)
    assert [row["status"] for row in rows] == ["MISSED"] * 3  # 20 min late > 10 min window
    assert len(tasks) == 1  # never a burst

    clock.set(datetime(2025, 1, 10, 14, 0, 5, tzinfo=UTC))
    tasks = await restarted.tick()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    rows = await _rows(scheduler_pool, outside)
    assert (rows[-1]["status"], rows[-1]["trigger"]) == ("SUCCEEDED", "schedule")


async def test_pause_is_persisted_and_skips_until_resumed(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str],
) -> None:
    name = job_name("paused")
    specs = jobs_from(_job(name, probe_address))
    clock = ManualClock(datetime(2025, 1, 10, 9, 1, tzinfo=UTC))
    engine = make_engine(specs, clock, replica="pauser")
    await engine.start()
    await engine.set_paused(name, True)
    await engine.stop()

    other = make_engine(specs, clock, replica="other-replica")  # a restart, or another replica
    clock.set(datetime(2025, 1, 10, 9, 5, 2, tzinfo=UTC))
    assert await other.tick() == []
    [view] = [view for view in await other.views() if view.spec.name == name]
    assert view.state is not None and view.state.paused
    await other.set_paused(name, False)
    clock.set(datetime(2025, 1, 10, 9, 10, 2, tzinfo=UTC))
    tasks = await other.tick()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    rows = await _rows(scheduler_pool, name)
    assert [(row["status"], row["error"]) for row in rows] == [
        ("SKIPPED", "the job is paused"), ("SUCCEEDED", "")]


async def test_a_target_that_is_down_fails_the_run_not_the_scheduler(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str],
) -> None:
    down, fine = job_name("down"), job_name("fine")
    specs = jobs_from({**_job(down, f"127.0.0.1:{free_port()}", timeout="1s"),
                       **_job(fine, probe_address)})
    clock = ManualClock(datetime(2025, 1, 10, 9, 1, tzinfo=UTC))
    engine = make_engine(specs, clock)
    await _drive([engine], clock, datetime(2025, 1, 10, 9, 11, tzinfo=UTC),
                 timedelta(seconds=30))
    down_rows = await _rows(scheduler_pool, down)
    assert [row["status"] for row in down_rows] == ["FAILED", "FAILED"]
    assert "timed out" in down_rows[0]["error"] and "unavailable" in down_rows[0]["error"]
    assert [row["status"] for row in await _rows(scheduler_pool, fine)] == ["SUCCEEDED"] * 2


async def test_failed_target_jobs_are_failed_runs_with_the_report(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str],
) -> None:
    boom, unknown = job_name("boom"), job_name("unknown-scope")
    specs = jobs_from({**_job(boom, probe_address, scope="boom"),
                       **_job(unknown, probe_address, scope="no-such-scope")})
    clock = ManualClock(datetime(2025, 1, 10, 9, 4, 30, tzinfo=UTC))
    engine = make_engine(specs, clock)
    await _drive([engine], clock, datetime(2025, 1, 10, 9, 5, 30, tzinfo=UTC),
                 timedelta(seconds=60))
    run = (await engine.store.list(job=boom))[0]
    assert run.status == "FAILED" and run.report is not None
    assert run.report["status"] == "SYNC_STATUS_FAILED" and "hunter2" not in str(run.report)
    run = (await engine.store.list(job=unknown))[0]
    assert run.status == "FAILED" and run.error.startswith("INVALID_ARGUMENT: scope")


async def test_a_claim_whose_replica_died_before_calling_is_taken_over(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str],
) -> None:
    name = job_name("orphan")
    specs = jobs_from(_job(name, probe_address))
    due = datetime(2025, 1, 10, 9, 5, tzinfo=UTC)
    # A replica claims the 09:05 due time, then dies before calling the target.
    claimed = await claim_as_dead_replica(scheduler_pool, "dead-replica", name, due,
                                          probe_address, timedelta(seconds=30))
    assert claimed.run is not None

    clock = ManualClock(due + timedelta(seconds=10))
    survivor = make_engine(specs, clock, replica="survivor", lease=timedelta(seconds=30))
    assert await survivor.tick() == []  # the lease is still valid: nothing to do
    clock.advance(timedelta(seconds=25))
    tasks = await survivor.tick()
    assert len(tasks) == 1
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    [row] = await _rows(scheduler_pool, name)  # still one row for the due time
    assert (row["status"], row["claimed_by"], row["attempts"]) == ("SUCCEEDED", "survivor", 2)
    assert row["target_job_id"]


async def test_dst_days_through_the_engine(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str],
) -> None:
    expected = {
        "spring": (datetime(2025, 3, 29, 12, tzinfo=UTC), {
            "0 23 * * *": ["2025-03-29T23:00:00+01:00", "2025-03-30T23:00:00+02:00"],
            # 02:30 does not exist on 30 March: once, shifted by the gap to 03:30.
            "30 2 * * *": ["2025-03-30T03:30:00+02:00", "2025-03-31T02:30:00+02:00"]}),
        "fall": (datetime(2025, 10, 25, 12, tzinfo=UTC), {
            "0 23 * * *": ["2025-10-25T23:00:00+02:00", "2025-10-26T23:00:00+01:00"],
            # 02:30 happens twice on 26 October: once, the first time.
            "30 2 * * *": ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]}),
    }
    for season, (start, by_cron) in expected.items():
        names = {cron: job_name(f"paris-{season}-{cron[:4].replace(' ', '')}")
                 for cron in by_cron}
        specs = jobs_from({name: {"target": probe_address, "scope": "quick", "cron": cron,
                                  "time_zone": PARIS} for cron, name in names.items()})
        clock = ManualClock(start)
        engine = make_engine(specs, clock, misfire_grace=timedelta(minutes=15))
        await _drive([engine], clock, start + timedelta(days=2), timedelta(minutes=10))
        for cron, name in names.items():
            rows = await _rows(scheduler_pool, name)
            assert {row["status"] for row in rows} == {"SUCCEEDED"}, season
            local = [row["scheduled_time"].astimezone(specs[0].schedule.zone).isoformat()
                     for row in rows]
            assert local == by_cron[cron], (season, cron)
