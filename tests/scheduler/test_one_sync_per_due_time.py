"""One Sync on the target per due time, even when the target's job id could not be stored: a
failed write does not end the run, and a replica taking a run over finds the target's job a
previous holder started (by the run's reason) instead of calling Sync again. Real PostgreSQL,
a real target service, an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from services.scheduler.engine import Scheduler
from services.scheduler.store import SchedulerStore
from tests.scheduler.conftest import ManualClock, claim_as_dead_replica, jobs_from
from tests.scheduler.target_jobs import due_reasons_of, start_sync, sync_jobs_by_reason

LEASE = timedelta(seconds=30)


class TargetJobWriteFailsOnce(SchedulerStore):
    """The real store, whose first write of a target job id fails as a dropped connection
    does (PostgreSQL restarting, a network blip)."""

    def __init__(self, pool: asyncpg.Pool, replica: str) -> None:
        super().__init__(pool, replica)
        self.failures_left = 1

    async def set_target_job(self, run_id: str, target_job_id: str) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation")
        await super().set_target_job(run_id, target_job_id)


async def test_a_failed_write_of_the_target_job_id_does_not_sync_twice(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str],
) -> None:
    name = job_name("blip")
    specs = jobs_from({name: {"target": probe_address, "scope": "quick", "cron": "0 * * * *"}})
    clock = ManualClock(datetime(2025, 1, 10, 11, 59, 30, tzinfo=UTC))
    store = TargetJobWriteFailsOnce(scheduler_pool, "blip-replica")
    engine = make_engine(specs, clock, store=store, lease=LEASE)
    await engine.start()
    clock.set(datetime(2025, 1, 10, 12, 0, 1, tzinfo=UTC))
    first = await engine.tick()
    assert len(first) == 1
    await asyncio.wait(first, timeout=30)
    assert store.failures_left == 0  # the write did fail

    clock.advance(LEASE + timedelta(seconds=10))  # a lost run would be taken over now
    again = await engine.tick()
    if again:
        await asyncio.wait(again, timeout=30)

    [run] = await engine.store.list(job=name)
    assert await sync_jobs_by_reason(probe_address, due_reasons_of(name)) == {run.reason: 1}
    # The run went on after the failed write (no takeover) and stored the id at its end.
    assert run.status == "SUCCEEDED" and run.attempts == 1
    assert run.report is not None and run.target_job_id == run.report["job_id"]


async def test_a_takeover_follows_the_job_a_previous_holder_started_without_storing_it(
    make_engine: Callable[..., Scheduler], probe_address: str, scheduler_pool: asyncpg.Pool,
    job_name: Callable[[str], str],
) -> None:
    name = job_name("unrecorded")
    fields = {"target": probe_address, "scope": "quick", "cron": "*/5 * * * *"}
    due = datetime(2025, 1, 10, 9, 5, tzinfo=UTC)
    # A replica claims the 09:05 due time, the target accepts its Sync, and the replica dies
    # before storing the target's job id.
    claimed = await claim_as_dead_replica(scheduler_pool, "died-after-sync", name, due,
                                          probe_address, LEASE)
    assert claimed.run is not None
    started = await start_sync(probe_address, "quick", claimed.run.reason)

    clock = ManualClock(due + LEASE + timedelta(seconds=5))
    survivor = make_engine(jobs_from({name: fields}), clock, replica="finder", lease=LEASE)
    tasks = await survivor.tick()
    assert len(tasks) == 1
    await asyncio.wait_for(asyncio.gather(*tasks), 30)

    run = await survivor.store.get(claimed.run.id)
    assert await sync_jobs_by_reason(probe_address, due_reasons_of(name)) == {run.reason: 1}
    assert (run.status, run.claimed_by, run.attempts) == ("SUCCEEDED", "finder", 2)
    assert run.target_job_id == started
