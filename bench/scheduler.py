"""The scheduler's tick with 1,000 jobs: an idle tick (nothing due: lease renewal and takeover
query, then 1,000 in-memory comparisons) and a tick where all 1,000 jobs are due (1,000 claim
transactions). The jobs are paused, so due times are recorded SKIPPED through the same claim
transaction without calling any target. Reported next to the Ping baseline of a scheduler
process in the same run."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import Options, Report, as_process, bench_backends, ping
from services.scheduler.caller import SyncCaller
from services.scheduler.config import parse_jobs
from services.scheduler.engine import Scheduler
from services.scheduler.store import SchedulerStore
from shared.db import create_pool
from shared.migrations import apply_migrations, discover
from shared.server import SYNC_MIGRATIONS

JOBS = 1000
MIGRATIONS = Path(__file__).resolve().parent.parent / "services" / "scheduler" / "migrations"
QUIET = {"SCHEDULER_JOBS_FILE": str(Path(__file__).with_name("no_jobs.toml")),
         "SCHEDULER_TARGET_CHECK": "off"}


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def run(report: Report, options: Options) -> None:
    async with bench_backends() as env:
        with as_process("services.scheduler", {**env, **QUIET}) as address:
            baseline = await options.measure(address, ping)
        report.add_stats("Ping ×8 (scheduler process)", baseline)

        pool = await create_pool(env["DATABASE_URL"], "scheduler", max_size=4)
        caller = SyncCaller(None)
        try:
            async with pool.acquire() as connection:
                await apply_migrations(connection, "scheduler", discover("sync", SYNC_MIGRATIONS)
                                       + discover("scheduler", MIGRATIONS))
            jobs = parse_jobs({"jobs": {
                f"job-{n:04d}": {"target": "127.0.0.1:9", "scope": "bench",
                                 "cron": "* * * * *"} for n in range(JOBS)}}, {})
            clock = _Clock(datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC))
            store = SchedulerStore(pool, "bench")
            engine = Scheduler(jobs, store, caller, clock=clock)
            await engine.start()
            for job in jobs:
                await store.set_paused(job.name, True, clock())

            idle_ticks, started = 0, time.perf_counter()
            while time.perf_counter() - started < options.duration:
                await engine.tick()
                idle_ticks += 1
            idle_ms = (time.perf_counter() - started) * 1000 / idle_ticks

            due_ticks, due_seconds = 0, 0.0
            while due_seconds < options.duration or due_ticks < 2:
                clock.now += timedelta(minutes=1)
                began = time.perf_counter()
                await engine.tick()
                due_seconds += time.perf_counter() - began
                due_ticks += 1
            due_ms = due_seconds * 1000 / due_ticks
            recorded = await pool.fetchval("SELECT count(*) FROM runs")
            assert recorded == JOBS * due_ticks, (recorded, JOBS * due_ticks)
        finally:
            await caller.close()
            await engine.stop()
            await pool.close()

        report.add(f"idle tick, {JOBS} jobs", idle_ms, "ms",
                   notes=f"{idle_ticks} ticks; nothing due")
        report.add(f"idle tick, {JOBS} jobs vs Ping p50", idle_ms / baseline.p50_ms, "×",
                   notes=f"Ping p50 {baseline.p50_ms:.2f} ms")
        report.add(f"tick with {JOBS} jobs due", due_ms, "ms",
                   notes=f"{due_ticks} ticks; one claim transaction per job")
        report.add("due times recorded per second", JOBS * 1000 / due_ms, "claims/s")
