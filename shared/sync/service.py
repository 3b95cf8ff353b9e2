"""SyncService: what every domain service registers so the scheduler and people can sync it.

Domain code adds scopes to a :class:`SyncRegistry`; the registry runs jobs (one per lock key
across replicas, with heartbeats), records them and serves the RPCs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from syncsuite.sync.v1 import sync_pb2, sync_pb2_grpc

from shared.errors import InvalidArgument, NotFound
from shared.metrics import Metrics
from shared.paging import decode_time_id_token, encode_page_token, enum_filter, page_size
from shared.sync.job import INTERRUPTED, SyncJob
from shared.sync.store import JobRecord, SyncJobStore
from shared.timestamps import duration, timestamp

__all__ = ["SyncRegistry", "SyncScope", "SyncServicer", "report_from_record"]

log = structlog.get_logger("sync")

SyncHandler = Callable[[SyncJob], Awaitable[None]]
DetailsProvider = Callable[[], Awaitable[dict[str, str]]]


@dataclass(frozen=True)
class SyncScope:
    name: str
    run: SyncHandler
    description: str = ""
    # Scopes sharing a lock key never run at once; by default a scope locks its own name.
    locks: tuple[str, ...] = ()
    details: DetailsProvider | None = None

    @property
    def lock_keys(self) -> tuple[str, ...]:
        return self.locks or (self.name,)


class SyncRegistry:
    def __init__(
        self,
        service: str,
        store: SyncJobStore,
        metrics: Metrics,
        *,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        self.service = service
        self._store = store
        self._metrics = metrics
        self._heartbeat = heartbeat_seconds
        self._scopes: dict[str, SyncScope] = {}
        self._default = ""
        self._jobs: dict[str, SyncJob] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._after_job: list[Callable[[], Awaitable[object]]] = []

    def after_each_job(self, hook: Callable[[], Awaitable[object]]) -> None:
        """``hook`` runs when a job's work is done, before the job is reported finished (e.g.
        waiting until this replica's read caches have heard of the job's writes)."""
        self._after_job.append(hook)

    def add(self, scope: SyncScope, *, default: bool = False) -> None:
        self._scopes[scope.name] = scope
        if default or not self._default:
            self._default = scope.name

    @property
    def scopes(self) -> list[str]:
        return list(self._scopes)

    def scope(self, name: str) -> SyncScope:
        chosen = name or self._default
        if chosen not in self._scopes:
            choices = ", ".join(self._scopes) or "none"
            raise InvalidArgument(
                "scope", f"unknown scope {chosen!r}; this service syncs: {choices}"
            )
        return self._scopes[chosen]

    async def start(
        self, scope_name: str = "", *, full: bool = False, dry_run: bool = False, reason: str = ""
    ) -> SyncJob:
        """Starts a job in the background; raises AlreadyRunning when its scope is busy."""
        scope = self.scope(scope_name)
        job = SyncJob(scope.name, full=full, dry_run=dry_run, reason=reason[:200])
        await self._store.start(job, scope.lock_keys)
        self._jobs[job.id] = job
        self._tasks[job.id] = asyncio.create_task(self._run(scope, job), name=f"sync-{job.id}")
        log.info("sync_started", job_id=job.id, scope=job.scope, full=full, dry_run=dry_run,
                 reason=job.reason)
        return job

    async def run(self, scope_name: str = "", **options: Any) -> SyncJob:
        """Starts a job and waits for its end (the job goes on if the waiter is cancelled)."""
        job = await self.start(scope_name, **options)
        await asyncio.shield(self._tasks[job.id])
        return job

    async def _run(self, scope: SyncScope, job: SyncJob) -> None:
        heartbeat = asyncio.create_task(self._beat(job))
        error: BaseException | None = None
        try:
            await scope.run(job)
        except asyncio.CancelledError as cancelled:
            error = RuntimeError(INTERRUPTED)
            job.finish(error)
            await self._record_end(job, heartbeat)
            raise cancelled
        except Exception as failure:
            error = failure
            log.error("sync_failed", job_id=job.id, scope=job.scope, exc_info=failure)
        for hook in self._after_job:
            try:
                await hook()
            except Exception as failure:
                log.warning("sync_after_job_hook_failed", job_id=job.id, error=repr(failure))
        if job.finished_at is None:
            job.finish(error)
        await self._record_end(job, heartbeat)

    async def _record_end(self, job: SyncJob, heartbeat: asyncio.Task[None]) -> None:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        try:
            await asyncio.shield(self._store.finish(job))
        except Exception as failure:  # the database is down: the lock expires by heartbeat
            log.error("sync_record_failed", job_id=job.id, error=str(failure))
        self._tasks.pop(job.id, None)
        elapsed = (job.finished_at - job.started_at).total_seconds() if job.finished_at else 0.0
        self._metrics.sync_runs.labels(job.scope, job.status).inc()
        self._metrics.sync_seconds.labels(job.scope).observe(elapsed)
        for outcome, value in job.counts.as_dict().items():
            if value:
                self._metrics.sync_records.labels(job.scope, outcome).inc(value)
        log.info("sync_finished", job_id=job.id, scope=job.scope, status=job.status,
                 duration_s=round(elapsed, 3), error=job.error or None, **job.counts.as_dict())
        # keep the finished job a little for watchers, then forget it
        asyncio.get_running_loop().call_later(300, self._jobs.pop, job.id, None)

    async def _beat(self, job: SyncJob) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                await self._store.heartbeat(job)
            except Exception as failure:
                log.warning("sync_heartbeat_failed", job_id=job.id, error=str(failure))

    def local_job(self, job_id: str) -> SyncJob | None:
        return self._jobs.get(job_id)

    async def record(self, job_id: str) -> JobRecord:
        job = self._jobs.get(job_id)
        if job is not None:
            return JobRecord.from_job(job)
        found = await self._store.get(job_id)
        if found is None:
            raise NotFound(f"no sync job {job_id!r} in service {self.service}")
        return found

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Cancels running jobs; each is recorded FAILED ('interrupted')."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    @property
    def store(self) -> SyncJobStore:
        return self._store


def report_from_record(service: str, record: JobRecord) -> sync_pb2.SyncReport:
    operations = []
    for op in record.operations:
        operations.append(sync_pb2.OperationResult(
            name=op["name"], ok=op["ok"], records=op["records"],
            duration=duration(op["duration_seconds"]),
            error=op["error"], counts=sync_pb2.SyncCounts(**op["counts"]),
            details={k: str(v) for k, v in op["details"].items()},
        ))
    return sync_pb2.SyncReport(
        job_id=record.id, service=service, scope=record.scope,
        status=sync_pb2.SyncStatus.Value(f"SYNC_STATUS_{record.status}"),
        full=record.full, dry_run=record.dry_run, reason=record.reason,
        start_time=timestamp(record.started_at), finish_time=timestamp(record.finished_at),
        counts=sync_pb2.SyncCounts(**record.counts), operations=operations,
        error=record.error, message=record.message, progress=record.progress,
    )


def _encode_token(record: JobRecord) -> str:
    return encode_page_token({"started": record.started_at.isoformat(), "id": record.id})


class SyncServicer(sync_pb2_grpc.SyncServiceServicer):
    def __init__(self, registry: SyncRegistry, watch_poll_seconds: float = 1.0) -> None:
        self._registry = registry
        self._poll = watch_poll_seconds

    def _report(self, record: JobRecord) -> sync_pb2.SyncReport:
        return report_from_record(self._registry.service, record)

    async def Sync(self, request: sync_pb2.SyncRequest, context: Any) -> sync_pb2.SyncResponse:
        options = {"full": request.full, "dry_run": request.dry_run,
                   "reason": request.reason or "manual"}
        if request.background:
            job = await self._registry.start(request.scope, **options)
        else:
            job = await self._registry.run(request.scope, **options)
        return sync_pb2.SyncResponse(report=self._report(JobRecord.from_job(job)))

    async def GetSyncStatus(
        self, request: sync_pb2.GetSyncStatusRequest, context: Any
    ) -> sync_pb2.GetSyncStatusResponse:
        names = [self._registry.scope(request.scope).name] if request.scope else (
            self._registry.scopes
        )
        scopes = []
        for name in names:
            summary = await self._registry.store.scope_summary(name)
            scope = self._registry.scope(name)
            status = sync_pb2.ScopeStatus(
                scope=name, last_success_time=timestamp(summary["last_success"]),
                details=await scope.details() if scope.details else {},
            )
            if summary["running"]:
                status.running.CopyFrom(self._report(await self._registry.record(
                    summary["running"].id)))
            if summary["last_finished"]:
                status.last_finished.CopyFrom(self._report(summary["last_finished"]))
            scopes.append(status)
        return sync_pb2.GetSyncStatusResponse(service=self._registry.service, scopes=scopes)

    async def GetSyncJob(
        self, request: sync_pb2.GetSyncJobRequest, context: Any
    ) -> sync_pb2.GetSyncJobResponse:
        if not request.job_id:
            raise InvalidArgument("job_id", "is required")
        return sync_pb2.GetSyncJobResponse(
            report=self._report(await self._registry.record(request.job_id))
        )

    async def ListSyncJobs(
        self, request: sync_pb2.ListSyncJobsRequest, context: Any
    ) -> sync_pb2.ListSyncJobsResponse:
        size = page_size(request.page_size, default=20, maximum=100)
        if request.scope:
            self._registry.scope(request.scope)
        status = enum_filter(sync_pb2.SyncStatus, request.status, field="status",
                             prefix="SYNC_STATUS_")
        before = (decode_time_id_token(request.page_token, "started") if request.page_token
                  else None)
        records = await self._registry.store.list(
            scope=request.scope, status=status, limit=size + 1, before=before
        )
        page, more = records[:size], len(records) > size
        return sync_pb2.ListSyncJobsResponse(
            jobs=[self._report(record) for record in page],
            next_page_token=_encode_token(page[-1]) if more else "",
        )

    async def WatchSync(
        self, request: sync_pb2.WatchSyncRequest, context: Any
    ) -> AsyncIterator[sync_pb2.WatchSyncResponse]:
        if not request.job_id:
            raise InvalidArgument("job_id", "is required")
        while True:
            record = await self._registry.record(request.job_id)
            yield sync_pb2.WatchSyncResponse(report=self._report(record))
            if record.status != "RUNNING":
                return
            job = self._registry.local_job(request.job_id)
            if job is not None:
                await job.wait_changed(self._poll)
            else:
                await asyncio.sleep(self._poll)
