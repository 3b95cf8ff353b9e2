"""timeentries: CreateTimeEntry at 8 and 100 writers and ListTimeEntries of a hot month, as
ratios to Ping on the same server process, beside WhoAmI (a per-user RPC that touches no store:
the floor under any of them on this machine); then how fast the worker process drains the
outbox into PostgreSQL. The Zoho sandbox runs in this process (a thread), with no rate limit."""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from datetime import UTC, datetime, timedelta

import grpc
import redis.asyncio as aioredis
from syncsuite.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc
from syncsuite.timeentries.v1 import timeentries_service_pb2 as pb
from syncsuite.timeentries.v1 import timeentries_service_pb2_grpc as pb_grpc

from bench.harness import (
    RUN_DIR,
    Call,
    Options,
    Report,
    admin_metadata,
    as_process,
    at_least,
    at_most,
    bench_backends,
)
from services.timeentries.sandbox import SandboxConfig, ZohoSandbox, create_app, sandbox_email
from shared.auth import issue_user_token
from shared.processes import ManagedProcess
from shared.sandbox import SandboxServer

SERVICE = "syncsuite.timeentries.v1.TimeEntriesService"


def _today(offset: int = 0) -> str:
    return (datetime.now(UTC).date() - timedelta(days=offset)).isoformat()


def create_entry(token: str, project: str, channel: grpc.aio.Channel) -> Call:
    stub = pb_grpc.TimeEntriesServiceStub(channel)
    metadata = (("authorization", f"Bearer {token}"),)
    request = pb.CreateTimeEntryRequest(project_id=project, date=_today(1), duration_minutes=30,
                                        description="bench", billable=True)
    return lambda: stub.CreateTimeEntry(request, metadata=metadata, timeout=10)


def who_am_i(token: str, channel: grpc.aio.Channel) -> Call:
    """An RPC that authenticates the user and answers, touching no store: the floor of any
    per-user RPC on this machine."""
    stub = diagnostics_pb2_grpc.DiagnosticsServiceStub(channel)
    metadata = (("authorization", f"Bearer {token}"),)
    request = diagnostics_pb2.WhoAmIRequest()
    return lambda: stub.WhoAmI(request, metadata=metadata, timeout=10)


def list_month(token: str, channel: grpc.aio.Channel) -> Call:
    stub = pb_grpc.TimeEntriesServiceStub(channel)
    metadata = (("authorization", f"Bearer {token}"),)
    request = pb.ListTimeEntriesRequest(from_date=_today(29), to_date=_today(0), page_size=200)
    return lambda: stub.ListTimeEntries(request, metadata=metadata, timeout=10)


async def _backlog(stub: pb_grpc.TimeEntriesServiceStub, admin: object) -> dict[str, int]:
    reply = await stub.GetSyncBacklog(pb.GetSyncBacklogRequest(), metadata=admin, timeout=10)
    return {t.target: t.pending_count for t in reply.targets}


async def run(report: Report, options: Options) -> None:
    state = ZohoSandbox(SandboxConfig(users=20, projects_limit=10_000_000, window_seconds=1))
    async with bench_backends() as backend_env:
        with SandboxServer(create_app(state)) as sandbox:
            env = {**backend_env, "ZOHO_DATA_SOURCE": "sandbox", "ZOHO_SANDBOX_URL": sandbox.url,
                   "ZOHO_PROJECTS_RATE": "100000", "ZOHO_CRM_RATE": "100000",
                   "TIMEENTRIES_INPROCESS_WORKERS": "false"}
            secret = env["SYNCSUITE_JWT_SECRET"]
            admin = admin_metadata(env)
            with as_process("services.timeentries", env) as address:
                async with grpc.aio.insecure_channel(address) as channel:
                    stub = pb_grpc.TimeEntriesServiceStub(channel)
                    writer, reader, crowd = sandbox_email(1), sandbox_email(2), sandbox_email(3)
                    tokens = {email: issue_user_token(secret, email, ttl_seconds=7200)
                              for email in (writer, reader, crowd)}
                    projects: dict[str, str] = {}
                    deadline = time.monotonic() + 30
                    while len(projects) < 3 and time.monotonic() < deadline:
                        for email, token in tokens.items():
                            reply = await stub.ListProjects(pb.ListProjectsRequest(), metadata=(
                                ("authorization", f"Bearer {token}"),))
                            if reply.projects:
                                projects[email] = reply.projects[0].project_id
                        await asyncio.sleep(0.2)
                    reader_meta = (("authorization", f"Bearer {tokens[reader]}"),)
                    for offset in range(100):  # a hot month: ~100 entries in 30 days
                        await stub.CreateTimeEntry(pb.CreateTimeEntryRequest(
                            project_id=projects[reader], date=_today(offset % 30),
                            duration_minutes=30, description=f"entry {offset}"),
                            metadata=reader_meta)

                    floor = await options.compare(
                        address, functools.partial(who_am_i, tokens[writer]))
                    report.add_stats("WhoAmI ×8 (authenticated, no store)", floor.candidate)
                    report.add_comparison("WhoAmI ×8", floor)

                    create = functools.partial(create_entry, tokens[writer], projects[writer])
                    writes = await options.compare(address, create)
                    report.add_stats("CreateTimeEntry ×8", writes.candidate,
                                     p99=at_most(5, "ms"))
                    report.add_comparison("CreateTimeEntry ×8", writes,
                                          throughput=at_least(0.5, "×"))

                    crowd_create = functools.partial(create_entry, tokens[crowd], projects[crowd])
                    many = await options.compare(address, crowd_create, concurrency=100)
                    report.add_stats("CreateTimeEntry ×100", many.candidate)
                    report.add("CreateTimeEntry ×100 errors", many.candidate.errors, "calls",
                               target=at_most(0))
                    report.add_comparison("CreateTimeEntry ×100", many)

                    reads = await options.compare(
                        address, functools.partial(list_month, tokens[reader]))
                    report.add_stats("ListTimeEntries month (100 entries) ×8", reads.candidate,
                                     p99=at_most(5, "ms"))
                    report.add_comparison("ListTimeEntries month ×8", reads)

                    await _drain(report, stub, admin, env)
                    await _check_nothing_lost(report, env, crowd)


async def _drain(
    report: Report, stub: pb_grpc.TimeEntriesServiceStub, admin: object, env: dict[str, str]
) -> None:
    """Starts the worker process on the backlog the benchmarks left and times PostgreSQL's
    share of it from its first acknowledged batch to the last."""
    start = (await _backlog(stub, admin))["postgres"]
    worker = ManagedProcess("timeentries-worker",
                            [sys.executable, "-m", "services.timeentries.worker"], env,
                            RUN_DIR / "timeentries-worker.log").start()
    try:
        first_seen = None
        pending = start
        began = time.monotonic()
        while pending > 0 and time.monotonic() - began < 120:
            pending = (await _backlog(stub, admin))["postgres"]
            now = time.monotonic()
            if first_seen is None and pending < start:
                first_seen = (now, pending)
            await asyncio.sleep(0.02)
        if first_seen is None or pending > 0:
            report.add("worker drain into PostgreSQL", 0, "entries/s",
                       target=at_least(5000, "entries/s"), notes=f"{pending} left of {start}")
            return
        seconds, drained = time.monotonic() - first_seen[0], first_seen[1]
        report.add("worker drain into PostgreSQL", drained / max(seconds, 1e-6), "entries/s",
                   target=at_least(5000, "entries/s"),
                   notes=f"{drained} entries after the first batch in {seconds:.2f} s "
                         f"(backlog {start}; the Zoho sink ran beside it)")
    finally:
        worker.stop()


async def _check_nothing_lost(report: Report, env: dict[str, str], email: str) -> None:
    import asyncpg

    redis = aioredis.Redis.from_url(env["REDIS_URL"], decode_responses=True)
    try:
        # day numbers are ≥ 1; bookkeeping members of the index score ≤ 0
        in_redis = await redis.zcount(f"user:{email}:entries:by-date", 1, "+inf")
    finally:
        await redis.aclose()
    connection = await asyncpg.connect(env["DATABASE_URL"])
    try:
        in_postgres = await connection.fetchval(
            "SELECT count(*) FROM timeentries.time_entries WHERE email = $1", email)
    finally:
        await connection.close()
    report.add("100-writer entries missing from PostgreSQL after drain", in_redis - in_postgres,
               "entries", target=at_most(0), notes=f"{in_redis} in Redis, {in_postgres} in "
               "PostgreSQL")
