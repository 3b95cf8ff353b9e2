"""The scheduler service: wiring, the start-up target check and the SchedulerService handlers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from google.protobuf import json_format
from syncsuite.scheduler.v1 import scheduler_service_pb2 as pb
from syncsuite.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from syncsuite.sync.v1 import sync_pb2

from services.scheduler.caller import SyncCaller
from services.scheduler.config import JobSpec, load_jobs
from services.scheduler.engine import Clock, JobView, Scheduler, SchedulerMetrics, system_clock
from services.scheduler.settings import SchedulerSettings
from services.scheduler.store import RunRecord, SchedulerStore
from shared.config import ConfigError, load
from shared.errors import InvalidArgument
from shared.paging import decode_time_id_token, encode_page_token, enum_filter, page_size
from shared.server import Runtime, ServiceDefinition
from shared.sync import SyncJob, SyncScope
from shared.timestamps import duration, timestamp

__all__ = ["SERVICE", "SchedulerServicer", "check_targets", "setup"]

log = structlog.get_logger("scheduler")

_OVERLAP = {"forbid": pb.OVERLAP_POLICY_FORBID, "allow": pb.OVERLAP_POLICY_ALLOW}
_TRIGGER = {"schedule": pb.RUN_TRIGGER_SCHEDULE, "catch_up": pb.RUN_TRIGGER_CATCH_UP,
            "manual": pb.RUN_TRIGGER_MANUAL}


def run_message(run: RunRecord) -> pb.Run:
    message = pb.Run(
        run_id=run.id, job=run.job, trigger=_TRIGGER[run.trigger],
        status=pb.RunStatus.Value(f"RUN_STATUS_{run.status}"),
        scheduled_time=timestamp(run.scheduled_time), fire_time=timestamp(run.fire_time),
        start_time=timestamp(run.started_at), finish_time=timestamp(run.finished_at),
        target=run.target, target_address=run.target_address, scope=run.scope,
        replica=run.claimed_by, attempts=run.attempts, target_job_id=run.target_job_id,
        error=run.error,
    )
    if run.report:
        message.report.CopyFrom(
            json_format.ParseDict(run.report, sync_pb2.SyncReport(), ignore_unknown_fields=True)
        )
    return message


def job_message(view: JobView) -> pb.Job:
    spec, state = view.spec, view.state
    message = pb.Job(
        name=spec.name, description=spec.description, target=spec.target,
        target_address=spec.target_address, scope=spec.scope, full=spec.full, cron=spec.cron,
        time_zone=spec.time_zone, timeout=duration(spec.timeout), overlap=_OVERLAP[spec.overlap],
        enabled=spec.enabled, paused=bool(state and state.paused),
        pause_time=timestamp(state.paused_at if state else None),
        catch_up_window=duration(spec.catch_up_window), jitter=duration(spec.jitter),
    )
    if view.next_fire is not None:
        message.next_fire_time.CopyFrom(timestamp(view.next_fire))
        message.next_fire_time_local = spec.schedule.local(view.next_fire).isoformat()
    if view.last_run is not None:
        message.last_run.CopyFrom(run_message(view.last_run))
    return message


def _job_name(name: str) -> str:
    if not name:
        raise InvalidArgument("name", "is required (ListJobs lists the jobs)")
    return name


class SchedulerServicer(pb_grpc.SchedulerServiceServicer):
    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    async def _view(self, name: str) -> pb.Job:
        views = await self._scheduler.views()
        return job_message(next(view for view in views if view.spec.name == name))

    async def ListJobs(self, request: pb.ListJobsRequest, context: Any) -> pb.ListJobsResponse:
        return pb.ListJobsResponse(
            jobs=[job_message(view) for view in await self._scheduler.views()]
        )

    async def TriggerJob(
        self, request: pb.TriggerJobRequest, context: Any
    ) -> pb.TriggerJobResponse:
        run = await self._scheduler.trigger(_job_name(request.name), wait=request.wait)
        return pb.TriggerJobResponse(run=run_message(run))

    async def ListRuns(self, request: pb.ListRunsRequest, context: Any) -> pb.ListRunsResponse:
        size = page_size(request.page_size, default=50, maximum=200)
        if request.job:
            self._scheduler.job(request.job)
        status = enum_filter(pb.RunStatus, request.status, field="status", prefix="RUN_STATUS_")
        before = (decode_time_id_token(request.page_token, "scheduled") if request.page_token
                  else None)
        store = self._scheduler.store
        runs = await store.list(job=request.job, status=status, limit=size + 1, before=before)
        page, more = runs[:size], len(runs) > size
        tally = await store.tally(request.job)
        token = encode_page_token(
            {"scheduled": page[-1].scheduled_time.isoformat(), "id": page[-1].id}
        ) if more else ""
        return pb.ListRunsResponse(
            runs=[run_message(run) for run in page], next_page_token=token,
            tally=pb.RunTally(**tally.__dict__),
        )

    async def PauseJob(self, request: pb.PauseJobRequest, context: Any) -> pb.PauseJobResponse:
        name = _job_name(request.name)
        await self._scheduler.set_paused(name, True)
        log.info("scheduler_paused", job=name)
        return pb.PauseJobResponse(job=await self._view(name))

    async def ResumeJob(
        self, request: pb.ResumeJobRequest, context: Any
    ) -> pb.ResumeJobResponse:
        name = _job_name(request.name)
        await self._scheduler.set_paused(name, False)
        log.info("scheduler_resumed", job=name)
        return pb.ResumeJobResponse(job=await self._view(name))


async def check_targets(
    jobs: list[JobSpec], caller: SyncCaller, wait_seconds: float, *, probe_timeout: float = 2.0,
) -> list[str]:
    """Problems with the enabled jobs' targets, each naming its job; waits up to
    ``wait_seconds`` for targets that are still starting."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    pending = [job for job in jobs if job.enabled]
    problems: dict[str, str] = {}
    while pending:
        answers = await asyncio.gather(
            *(caller.check(job.target_address, job.scope, probe_timeout) for job in pending)
        )
        problems = {job.name: answer for job, answer in zip(pending, answers, strict=True)
                    if answer}
        pending = [job for job in pending if job.name in problems]
        if not pending or loop.time() + 0.5 > deadline:
            break
        await asyncio.sleep(0.5)
    return [f"job {name!r}: target {problem}" for name, problem in problems.items()]


async def _warn_about_targets(jobs: list[JobSpec], caller: SyncCaller, wait: float) -> None:
    for problem in await check_targets(jobs, caller, wait):
        log.warning("scheduler_target_problem", problem=problem,
                    note="runs of this job will be FAILED until the target answers")


def _prune_scope(store: SchedulerStore, retention_days: int, clock: Clock) -> SyncScope:
    async def prune(job: SyncJob) -> None:
        async with job.operation("runs", isolate=False) as op:
            before = clock() - timedelta(days=retention_days)
            op.details["older_than"] = before.isoformat()
            if not job.dry_run:
                op.counts.deleted = await store.prune(before)
                op.records = op.counts.deleted

    return SyncScope("prune-runs", prune,
                     description="deletes finished runs older than SCHEDULER_RUN_RETENTION_DAYS")


async def setup(runtime: Runtime, *, clock: Clock = system_clock) -> None:
    settings = load(SchedulerSettings, runtime.environ)
    jobs = load_jobs(settings.jobs_file, runtime.environ)
    caller = SyncCaller(runtime.settings.admin_token)
    runtime.on_stop(caller.close)
    if runtime.settings.admin_token is None:
        log.warning("scheduler_without_admin_token",
                    note="SYNCSUITE_ADMIN_TOKEN is unset: every target will refuse the Sync calls")
    if settings.target_check == "strict":
        problems = await check_targets(jobs, caller, settings.target_wait_seconds)
        if problems:
            await caller.close()
            raise ConfigError("unreachable targets (SCHEDULER_TARGET_CHECK=strict): "
                              + "; ".join(problems))
    elif settings.target_check == "warn":
        runtime.tasks.spawn(
            _warn_about_targets(jobs, caller, settings.target_wait_seconds),
            "scheduler-target-check",
        )
    store = SchedulerStore(runtime.db, settings.replica)
    scheduler = Scheduler(
        jobs, store, caller, clock=clock, lease=timedelta(seconds=settings.lease_seconds),
        heartbeat_seconds=settings.heartbeat_seconds,
        misfire_grace=timedelta(seconds=settings.misfire_grace_seconds),
        poll_seconds=settings.poll_seconds, metrics=SchedulerMetrics(runtime.metrics.registry),
    )
    await scheduler.start()
    runtime.on_stop(scheduler.stop)
    runtime.sync.add(_prune_scope(store, settings.run_retention_days, clock), default=True)
    runtime.add_servicer(
        pb.DESCRIPTOR.services_by_name["SchedulerService"],
        pb_grpc.add_SchedulerServiceServicer_to_server, SchedulerServicer(scheduler),
    )
    scheduler.start_loop()
    log.info("scheduler_ready", jobs=len(jobs), enabled=sum(job.enabled for job in jobs),
             jobs_file=settings.jobs_file, replica=settings.replica)


SERVICE = ServiceDefinition(
    name="scheduler",
    default_port=50055,
    setup=setup,
    migrations=Path(__file__).parent / "migrations",
)
