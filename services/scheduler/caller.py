"""Calls a target's SyncService: Sync (background) with the admin token, then WatchSync until the
job ends — all inside the run's deadline, retrying UNAVAILABLE with full-jitter backoff.

Starting the sync in the background gives the run the target's job id at once; it is stored,
so a replica taking over a run whose scheduler died follows the same target job instead of
starting a second one. When the id was never stored (the holder died, or PostgreSQL failed,
right after the target accepted), the new holder finds the target's job by the run's reason,
which is unique to the run, before it calls Sync.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
import structlog
from google.protobuf import json_format
from syncsuite.sync.v1 import sync_pb2, sync_pb2_grpc

from shared.config import Secret
from shared.timestamps import from_timestamp

__all__ = ["CallOutcome", "SyncCaller"]

log = structlog.get_logger("scheduler.caller")

# A takeover looks for the previous holder's target job among the jobs started since the run
# was claimed; the target's clock may be this much behind the scheduler's.
_CLOCK_SKEW = timedelta(minutes=5)
# ... reading at most this many pages of ListSyncJobs (newest first; a scope runs one job at a
# time, so the job is on the first page unless the clocks disagree).
_LOOKUP_PAGES = 10
_LOOKUP_PAGE_SIZE = 100

_FINAL_STATUS = {
    sync_pb2.SYNC_STATUS_COMPLETED: "SUCCEEDED",
    sync_pb2.SYNC_STATUS_PARTIAL: "PARTIAL",
    sync_pb2.SYNC_STATUS_FAILED: "FAILED",
}


@dataclass(frozen=True)
class CallOutcome:
    status: str  # SUCCEEDED | PARTIAL | FAILED
    report: dict[str, Any] | None
    error: str
    target_job_id: str


class _DeadlineReached(Exception):
    pass


def report_as_json(report: sync_pb2.SyncReport) -> dict[str, Any]:
    return json_format.MessageToDict(report, preserving_proto_field_name=True)


class SyncCaller:
    """One channel per target address, created on first use and closed by :meth:`close`."""

    def __init__(
        self, admin_token: Secret | None, *, backoff_base: float = 0.2, backoff_cap: float = 5.0,
    ) -> None:
        self._metadata = (
            (("authorization", f"Bearer {admin_token.reveal()}"),) if admin_token else ()
        )
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap

    def _stub(self, address: str) -> sync_pb2_grpc.SyncServiceStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address)
            self._channels[address] = channel
        return sync_pb2_grpc.SyncServiceStub(channel)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    async def check(self, address: str, scope: str, timeout: float) -> str:
        """Why ``address`` cannot run ``scope`` ('' when it can)."""
        try:
            await self._stub(address).GetSyncStatus(
                sync_pb2.GetSyncStatusRequest(scope=scope), metadata=self._metadata,
                timeout=timeout,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                return f"{address} does not know scope {scope!r}: {error.details()}"
            return f"{address} does not answer ({error.code().name}: {error.details()})"
        return ""

    async def run(
        self, *, address: str, scope: str, full: bool, reason: str, seconds: float,
        target_job_id: str = "", started_since: datetime | None = None,
        on_accepted: Callable[[str], Awaitable[None]] | None = None,
    ) -> CallOutcome:
        """Runs (or, with ``target_job_id``, follows) a sync; never raises for call failures.

        ``started_since`` is for a run taken over without a target job id: a job the target
        started with ``reason`` since then (by the previous holder) is followed instead of
        starting a second one. ``on_accepted`` gets the id of the job started or found."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            if not target_job_id:
                if started_since is not None:
                    target_job_id = await self._find_started(
                        address, scope, reason, started_since, deadline)
                if not target_job_id:
                    target_job_id = await self._start(address, scope, full, reason, deadline)
                if on_accepted is not None:
                    await on_accepted(target_job_id)
            report = await self._follow(address, target_job_id, deadline)
        except _DeadlineReached as reached:
            waiting = f" (target job {target_job_id} still running)" if target_job_id else ""
            return CallOutcome("FAILED", None, f"timed out after {seconds:.0f}s: {reached}"
                               f"{waiting}", target_job_id)
        except grpc.aio.AioRpcError as error:
            return CallOutcome("FAILED", None, f"{error.code().name}: {error.details()}",
                               target_job_id)
        status = _FINAL_STATUS.get(report.status, "FAILED")
        return CallOutcome(status, report_as_json(report), report.error, target_job_id)

    async def _start(
        self, address: str, scope: str, full: bool, reason: str, deadline: float
    ) -> str:
        request = sync_pb2.SyncRequest(scope=scope, full=full, reason=reason, background=True)
        response = await self._retrying(
            lambda timeout: self._stub(address).Sync(
                request, metadata=self._metadata, timeout=timeout
            ),
            deadline, f"Sync {scope} on {address}",
        )
        return str(response.report.job_id)

    async def _find_started(
        self, address: str, scope: str, reason: str, since: datetime, deadline: float
    ) -> str:
        """The id of the job the target started with ``reason`` since ``since``, or ''."""
        oldest = since - _CLOCK_SKEW
        token = ""
        for _ in range(_LOOKUP_PAGES):
            page = await self._jobs_page(address, scope, token, deadline)
            for job in page.jobs:
                if job.reason == reason:
                    log.info("target_job_found", address=address, job_id=job.job_id,
                             reason=reason)
                    return str(job.job_id)
            token = page.next_page_token
            # Newest first: once past the run's start, no older job can be the run's.
            if not token or not page.jobs or from_timestamp(page.jobs[-1].start_time) < oldest:
                return ""
        log.warning("target_job_lookup_gave_up", address=address, reason=reason,
                    pages=_LOOKUP_PAGES, note="calling Sync")
        return ""

    async def _jobs_page(
        self, address: str, scope: str, token: str, deadline: float
    ) -> sync_pb2.ListSyncJobsResponse:
        request = sync_pb2.ListSyncJobsRequest(
            scope=scope, page_size=_LOOKUP_PAGE_SIZE, page_token=token)
        return await self._retrying(
            lambda timeout: self._stub(address).ListSyncJobs(
                request, metadata=self._metadata, timeout=timeout
            ),
            deadline, f"ListSyncJobs {scope} on {address}",
        )

    async def _follow(self, address: str, job_id: str, deadline: float) -> sync_pb2.SyncReport:
        async def watch(timeout: float) -> sync_pb2.SyncReport | None:
            last: sync_pb2.SyncReport | None = None
            call = self._stub(address).WatchSync(
                sync_pb2.WatchSyncRequest(job_id=job_id), metadata=self._metadata,
                timeout=timeout,
            )
            async for message in call:
                last = message.report
                if last.status != sync_pb2.SYNC_STATUS_RUNNING:
                    return last
            return None

        while True:
            report = await self._retrying(watch, deadline, f"WatchSync {job_id} on {address}")
            if report is not None:
                return report
            # The stream ended without a final report (the target is draining): watch again.
            await self._pause(0, deadline, "waiting for the target job to end")

    async def _retrying(
        self, call: Callable[[float], Awaitable[Any]], deadline: float, what: str
    ) -> Any:
        loop = asyncio.get_running_loop()
        attempt = 0
        unavailable = ""
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _DeadlineReached(f"{what}: target unavailable ({unavailable})"
                                       if unavailable else what)
            try:
                return await call(remaining)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise _DeadlineReached(what) from None
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                unavailable = str(error.details())
                log.warning("target_unavailable", call=what, attempt=attempt + 1,
                            error=unavailable)
                await self._pause(attempt, deadline, f"{what}: {error.details()}")
                attempt += 1

    async def _pause(self, attempt: int, deadline: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        delay = random.uniform(0, min(self._backoff_cap, self._backoff_base * 2**attempt))
        remaining = deadline - loop.time()
        if remaining <= delay:
            raise _DeadlineReached(f"target unavailable: {what}")
        await asyncio.sleep(max(delay, 0.05))
