"""The scheduler proper: ticks, claims, runs, leases and takeovers.

A tick (``await engine.tick()``; the loop calls it at least every ``poll_seconds``, tests call
it with an injected clock) does, for this replica:

1. takes over RUNNING runs whose lease expired (their replica died) and resumes them;
2. for each enabled job whose next fire time (due time + jitter delay) has come, lists the due
   times since its cursor and claims them in one transaction: every due time but the latest is
   recorded MISSED; the latest is fired when it is at most ``max(catch_up_window,
   misfire_grace)`` late (trigger ``catch_up`` past the grace), else recorded MISSED; a paused
   job records SKIPPED; overlap ``forbid`` records SKIPPED while a run of the job is going.
   The unique (job, scheduled time) row makes exactly one replica fire each due time.

Runs call the target in background tasks; a heartbeat renews their leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import CollectorRegistry, Counter

from services.scheduler.caller import SyncCaller
from services.scheduler.config import JobSpec
from services.scheduler.cron import jitter_delay
from services.scheduler.store import (
    Claim,
    DueTime,
    JobSchedule,
    JobState,
    RunRecord,
    SchedulerStore,
)
from shared.errors import NotFound

__all__ = ["Clock", "JobView", "Scheduler", "SchedulerMetrics", "system_clock"]

log = structlog.get_logger("scheduler")

Clock = Callable[[], datetime]
# A job down for long records its missed due times in batches of this size, one per tick.
MAX_DUE_TIMES_PER_TICK = 1000
# Claim transactions a tick runs at once (each holds one pooled connection).
CONCURRENT_CLAIMS = 4


def system_clock() -> datetime:
    return datetime.now(UTC)


class SchedulerMetrics:
    """Expected versus actual runs, on the service's Prometheus registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.expected = Counter(
            "syncsuite_scheduler_expected_runs_total",
            "Due times recorded by this replica (one per due time across replicas)", ["job"],
            registry=registry,
        )
        self.actual = Counter(
            "syncsuite_scheduler_actual_runs_total",
            "Due times this replica fired (the rest were skipped or missed)", ["job"],
            registry=registry,
        )
        self.outcomes = Counter(
            "syncsuite_scheduler_run_outcomes_total",
            "Runs by final status (SUCCEEDED, PARTIAL, FAILED, SKIPPED, MISSED) and trigger",
            ["job", "trigger", "status"], registry=registry,
        )


@dataclass
class _Cursor:
    last: datetime  # due times after this one are still to be handled
    next_due: datetime
    next_fire: datetime


@dataclass(frozen=True)
class JobView:
    spec: JobSpec
    state: JobState | None
    next_fire: datetime | None
    last_run: RunRecord | None


class Scheduler:
    def __init__(
        self,
        jobs: Sequence[JobSpec],
        store: SchedulerStore,
        caller: SyncCaller,
        *,
        clock: Clock = system_clock,
        lease: timedelta = timedelta(seconds=30),
        heartbeat_seconds: float = 5.0,
        misfire_grace: timedelta = timedelta(seconds=60),
        poll_seconds: float = 1.0,
        metrics: SchedulerMetrics | None = None,
    ) -> None:
        self.jobs = {job.name: job for job in jobs}
        self.store = store
        self._caller = caller
        self._clock = clock
        self._lease = lease
        self._heartbeat_seconds = heartbeat_seconds
        self._grace = misfire_grace
        self._poll = poll_seconds
        self._metrics = metrics
        self._cursors: dict[str, _Cursor] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}
        # run id -> target job id the target accepted but PostgreSQL failed to store: the
        # heartbeat stores it again (and finish does), so a takeover never calls Sync twice.
        self._unsaved_target_jobs: dict[str, str] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._loop: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._started = False

    @property
    def replica(self) -> str:
        return self.store.replica

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Registers the jobs (first-seen times, schedules) and loads every job's cursor from the
        database."""
        if self._started:
            return
        now = self._clock()
        states = await self.store.ensure_jobs(
            [JobSchedule(job.name, job.enabled, job.cron, job.time_zone)
             for job in self.jobs.values()], now)
        for name, job in self.jobs.items():
            state = states[name]
            if state.schedule_since == now and state.first_seen < now:
                log.info("scheduler_schedule_restarted", job=name, cron=job.cron,
                         time_zone=job.time_zone, enabled=job.enabled,
                         note="enabled again or its schedule changed: due times from now on")
            if job.enabled:
                self._set_cursor(job, state.cursor)
        self._heartbeat = asyncio.create_task(self._renew_leases(), name="scheduler-heartbeat")
        self._started = True

    def start_loop(self) -> None:
        """Ticks in the background until :meth:`stop`."""
        self._loop = asyncio.create_task(self._run_forever(), name="scheduler-loop")

    async def stop(self) -> None:
        """Stops ticking and the runs of this replica, and hands their leases over at once."""
        for task in (self._loop, self._heartbeat):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        held = list(self._runs)
        tasks = list(self._runs.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        try:
            await self.store.release(held, self._clock())
        except Exception as error:  # the database is down: the leases expire on their own
            log.warning("scheduler_release_failed", error=str(error))

    async def _run_forever(self) -> None:
        """Ticks until cancelled, sleeping until the next fire time (at most ``poll_seconds``)."""
        while True:
            try:
                await self.tick()
            except Exception as error:  # PostgreSQL down: keep ticking, the backlog is kept
                log.error("scheduler_tick_failed", error=str(error))
            pause = self._poll
            upcoming = [cursor.next_fire for cursor in self._cursors.values()]
            if upcoming:
                until = (min(upcoming) - self._clock()).total_seconds()
                pause = min(pause, max(until, 0.01))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    # -- the tick -----------------------------------------------------------------------------
    def _set_cursor(self, job: JobSpec, last: datetime) -> None:
        next_due = job.schedule.next_after(last)
        following = job.schedule.next_after(next_due)
        delay = jitter_delay(job.name, next_due, job.jitter, following)
        self._cursors[job.name] = _Cursor(last, next_due, next_due + delay)

    async def tick(self) -> list[asyncio.Task[None]]:
        """One pass; returns the run tasks it started (tests await them)."""
        if not self._started:
            await self.start()
        now = self._clock()
        if self._runs:
            await self.store.renew(list(self._runs), now + self._lease)
        started = []
        for run in await self.store.take_over(now, now + self._lease, list(self._runs)):
            log.warning("scheduler_run_taken_over", run_id=run.id, job=run.job,
                        target_job_id=run.target_job_id or None, attempts=run.attempts)
            started.append(self._launch(run))
        due = [(self.jobs[name], cursor) for name, cursor in self._cursors.items()
               if now >= cursor.next_fire]
        if not due:
            return started
        # Claims of different jobs are independent transactions: a few at once.
        gate = asyncio.Semaphore(CONCURRENT_CLAIMS)

        async def handle(job: JobSpec, cursor: _Cursor) -> asyncio.Task[None] | None:
            async with gate:
                return await self._handle_due(job, cursor, now)

        results = await asyncio.gather(*(handle(job, cursor) for job, cursor in due),
                                       return_exceptions=True)
        for (job, _cursor), result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                # PostgreSQL down or busy: the cursor did not move, the next tick retries.
                log.error("scheduler_claim_failed", job=job.name, error=str(result))
            elif result is not None:
                started.append(result)
        return started

    async def _handle_due(
        self, job: JobSpec, cursor: _Cursor, now: datetime
    ) -> asyncio.Task[None] | None:
        # One more than a batch tells "exactly a batch, the latest being now" from "more to come".
        dues = job.schedule.between(cursor.last, now, limit=MAX_DUE_TIMES_PER_TICK + 1)
        complete = len(dues) <= MAX_DUE_TIMES_PER_TICK
        dues = dues[:MAX_DUE_TIMES_PER_TICK]
        times: list[DueTime] = []
        for index, due in enumerate(dues):
            following = dues[index + 1] if index + 1 < len(dues) else job.schedule.next_after(due)
            times.append(DueTime(due, due + jitter_delay(job.name, due, job.jitter, following)))
        if complete and times and times[-1].fire > now:
            times.pop()  # its jitter delay has not passed yet: next tick
        if not times:
            return None
        window = max(job.catch_up_window, self._grace)
        latest: DueTime | None = None
        if complete and now - times[-1].fire <= window:
            latest = times.pop()
        late = latest is not None and now - latest.fire > self._grace
        claim = Claim(
            job=job.name, missed=times,
            missed_reason=(f"missed: the scheduler was not running at the due time and it is "
                           f"outside the catch-up window ({_human(job.catch_up_window)}) or a "
                           "later due time replaced it"),
            latest=latest, trigger="catch_up" if late else "schedule",
            forbid_overlap=job.overlap == "forbid", target=job.target,
            target_address=job.target_address, scope=job.scope, full=job.full,
            timeout=job.timeout,
        )
        result = await self.store.claim(claim, now, self._lease)
        handled = latest.scheduled if latest is not None else times[-1].scheduled
        self._set_cursor(job, handled)
        if self._metrics is not None:
            for status, count in result.inserted.items():
                self._metrics.expected.labels(job.name).inc(count)
                if status == "RUNNING":
                    self._metrics.actual.labels(job.name).inc(count)
                else:
                    self._metrics.outcomes.labels(job.name, "schedule", status).inc(count)
        if result.inserted:
            log.info("scheduler_due", job=job.name, **{k.lower(): v for k, v in
                                                       result.inserted.items()})
        return self._launch(result.run) if result.run is not None else None

    # -- manual runs, pause -------------------------------------------------------------------
    def job(self, name: str) -> JobSpec:
        if name not in self.jobs:
            raise NotFound(f"no job {name!r} (jobs: {', '.join(self.jobs) or 'none'})")
        return self.jobs[name]

    async def trigger(self, name: str, *, wait: bool = False) -> RunRecord:
        job = self.job(name)
        claim = Claim(
            job=job.name, missed=(), missed_reason="", latest=None, trigger="manual",
            forbid_overlap=job.overlap == "forbid", target=job.target,
            target_address=job.target_address, scope=job.scope, full=job.full,
            timeout=job.timeout,
        )
        run = await self.store.claim_manual(claim, self._clock(), self._lease)
        task = self._launch(run)
        log.info("scheduler_triggered", job=job.name, run_id=run.id)
        if wait:
            await asyncio.shield(task)
            return await self.store.get(run.id)
        return run

    async def set_paused(self, name: str, paused: bool) -> JobState:
        job = self.job(name)
        state = await self.store.set_paused(job.name, paused, self._clock())
        self._wake.set()
        return state

    async def views(self) -> list[JobView]:
        names = list(self.jobs)
        states = await self.store.job_states(names)
        last = await self.store.last_runs(names)
        views = []
        for name, job in self.jobs.items():
            cursor = self._cursors.get(name)
            next_fire = None
            if job.enabled:
                next_fire = cursor.next_due if cursor else job.schedule.next_after(self._clock())
            views.append(JobView(job, states.get(name), next_fire, last.get(name)))
        return views

    # -- running ------------------------------------------------------------------------------
    def _launch(self, run: RunRecord) -> asyncio.Task[None]:
        task = asyncio.create_task(self._execute(run), name=f"run-{run.id}")
        self._runs[run.id] = task
        task.add_done_callback(lambda _task, run_id=run.id: self._forget(run_id))
        return task

    def _forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
        self._unsaved_target_jobs.pop(run_id, None)

    async def _execute(self, run: RunRecord) -> None:
        try:
            await self._carry_out(run)
        except Exception:  # a bug or an unforeseen failure: say so; the lease then expires and
            # a replica takes the run over (it finds the target's job by the run's reason).
            log.exception("scheduler_run_crashed", run_id=run.id, job=run.job)

    async def _carry_out(self, run: RunRecord) -> None:
        now = self._clock()
        remaining = (run.deadline_at - now).total_seconds() if run.deadline_at else 0.0
        if remaining <= 0:
            status, report, error = "FAILED", None, (
                "abandoned: the replica holding the run stopped and the run's deadline has "
                "passed")
            target_job_id = run.target_job_id
            if run.target_job_id:
                error += f" (target job {run.target_job_id})"
        else:
            outcome = await self._caller.run(
                address=run.target_address, scope=run.scope, full=run.full, reason=run.reason,
                seconds=remaining, target_job_id=run.target_job_id,
                on_accepted=functools.partial(self._save_target_job, run.id),
                # A previous holder may have started the target's job without storing its id.
                started_since=run.started_at if run.attempts > 1 else None,
            )
            status, report, error = outcome.status, outcome.report, outcome.error
            target_job_id = outcome.target_job_id
        try:
            recorded = await self.store.finish(run.id, status, self._clock(), report, error,
                                               target_job_id)
        except Exception as failure:  # the database is down: the lease expires, a replica
            # takes the run over and follows the same target job to its end.
            log.error("scheduler_finish_failed", run_id=run.id, error=str(failure))
            return
        if not recorded:
            log.warning("scheduler_run_lost", run_id=run.id, job=run.job,
                        note="another replica took the run over")
            return
        if self._metrics is not None:
            self._metrics.outcomes.labels(run.job, run.trigger, status).inc()
        log.info("scheduler_run_finished", run_id=run.id, job=run.job, trigger=run.trigger,
                 status=status, error=error or None, target_job_id=target_job_id or None)

    async def _save_target_job(self, run_id: str, target_job_id: str) -> None:
        """Stores the target's job id of a run; when PostgreSQL fails, keeps it for the
        heartbeat to store, and the run goes on following the target's job."""
        try:
            await self.store.set_target_job(run_id, target_job_id)
        except Exception as error:
            log.warning("scheduler_target_job_not_saved", run_id=run_id,
                        target_job_id=target_job_id, error=str(error),
                        note="kept in memory; saved again by the heartbeat and at the end")
            self._unsaved_target_jobs[run_id] = target_job_id

    async def _save_unsaved_target_jobs(self) -> None:
        for run_id, target_job_id in list(self._unsaved_target_jobs.items()):
            await self.store.set_target_job(run_id, target_job_id)
            if self._unsaved_target_jobs.get(run_id) == target_job_id:
                del self._unsaved_target_jobs[run_id]

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            held = list(self._runs)
            if not held:
                continue
            try:
                kept = await self.store.renew(held, self._clock() + self._lease)
            except Exception as error:
                log.warning("scheduler_heartbeat_failed", error=str(error))
                continue
            for run_id in set(held) - kept:
                task = self._runs.get(run_id)
                if task is not None and not task.done():
                    log.warning("scheduler_lease_lost", run_id=run_id)
                    task.cancel()
            try:
                await self._save_unsaved_target_jobs()
            except Exception as error:  # still failing: the next heartbeat tries again
                log.warning("scheduler_target_job_not_saved", error=str(error))

    async def wait_for_runs(self, timeout: float = 30.0) -> None:
        """Waits for this replica's runs to end (tests, graceful stop)."""
        tasks = list(self._runs.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def local_runs(self) -> list[str]:
        return list(self._runs)


def _human(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

