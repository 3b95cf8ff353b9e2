"""What a target service says it ran, read through its real SyncService: the tests count Sync
calls by the reason the scheduler sends, which names the job and the due time."""

from __future__ import annotations

from collections import Counter

import grpc
from syncsuite.sync.v1 import sync_pb2, sync_pb2_grpc

from tests.conftest import ADMIN_TOKEN

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


def due_reasons_of(job: str) -> str:
    """The start of the reason of every scheduled Sync of ``job``."""
    return f"scheduler: {job} (due "


async def sync_jobs_by_reason(address: str, reason_prefix: str) -> Counter[str]:
    """How many sync jobs the target at ``address`` ran per reason starting with
    ``reason_prefix`` (every page of its ListSyncJobs)."""
    counts: Counter[str] = Counter()
    token = ""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        while True:
            page = await stub.ListSyncJobs(
                sync_pb2.ListSyncJobsRequest(page_size=100, page_token=token), metadata=ADMIN,
                timeout=10)
            counts.update(job.reason for job in page.jobs
                          if job.reason.startswith(reason_prefix))
            token = page.next_page_token
            if not token:
                return counts


async def start_sync(address: str, scope: str, reason: str) -> str:
    """Starts a background Sync on the target as a scheduler replica does; its job id."""
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await sync_pb2_grpc.SyncServiceStub(channel).Sync(
            sync_pb2.SyncRequest(scope=scope, reason=reason, background=True), metadata=ADMIN,
            timeout=10)
    return str(reply.report.job_id)
