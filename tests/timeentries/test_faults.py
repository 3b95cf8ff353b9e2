"""Faults: PostgreSQL down, Zoho throttling/failing/refusing, Redis killed, many writers."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import grpc
import pytest
from syncsuite.timeentries.v1 import timeentries_service_pb2 as pb

from services.timeentries.outbox import Outbox
from services.timeentries.sandbox import sandbox_email
from services.timeentries.server import SERVICE
from services.timeentries.store import EntryStore
from services.timeentries.worker import SINK_NAMES
from shared.backends import EmbeddedPostgres, EmbeddedRedis
from shared.sandbox import FaultPlan
from shared.server import RunningService, running_service
from tests.conftest import ADMIN_TOKEN
from tests.timeentries.conftest import (
    Caller,
    Zoho,
    backlog_drained,
    clean,
    fast_env,
    sync_projects,
)
from tests.timeentries.test_entries import day
from tests.waiting import wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


async def _pending(running: RunningService) -> dict[str, int]:
    return {b.target: b.pending for b in
            await Outbox(running.runtime.redis, SINK_NAMES).backlog()}


def _assert_once_in_zoho(zoho: Zoho, ids: list[str]) -> None:
    counts = {entry_id: len(zoho.state.logs_for(entry_id)) for entry_id in ids}
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}


async def test_postgres_down_writes_accepted_then_backlog_drains(
    service_env: dict[str, str], zoho: Zoho, redis_url: str, database_url: str,
    tmp_path: Path,
) -> None:
    postgres = EmbeddedPostgres(tmp_path / "pg")
    await asyncio.to_thread(postgres.start)
    try:
        await clean(redis_url, database_url)
        env = fast_env(service_env, zoho.url, DATABASE_URL=postgres.url)
        async with running_service(SERVICE, env) as running, \
                grpc.aio.insecure_channel(running.address) as channel:
            await sync_projects(running)
            email = sandbox_email(3)
            alice = Caller(channel, email)
            project = sorted(zoho.state.projects_of(email))[0]
            before = [await alice.create(project, day(i % 20), 15) for i in range(20)]
            await wait_for(lambda: backlog_drained(running))
            await asyncio.to_thread(postgres.stop)
            during = [await alice.create(project, day(i % 20), 20) for i in range(40)]
            pending = await _pending(running)
            assert pending["postgres"] == 40  # accepted, waiting for PostgreSQL
            assert len(await alice.list_all(day(25), day(0))) == 60
            await asyncio.sleep(1.5)  # several failed attempts while it is down
            await asyncio.to_thread(postgres.start)
            await wait_for(lambda: backlog_drained(running), timeout=60)
            versions = await EntryStore(running.runtime.db).versions()
            assert set(versions) == {e.entry_id for e in before + during}
            _assert_once_in_zoho(zoho, [e.entry_id for e in before + during])
    finally:
        await asyncio.to_thread(postgres.stop)


async def test_zoho_429_and_500_postgres_stays_current_zoho_catches_up_without_duplicates(
    service: RunningService, zoho: Zoho, channel: grpc.aio.Channel,
) -> None:
    email = sandbox_email(4)
    alice = Caller(channel, email)
    project = sorted(zoho.state.projects_of(email))[0]
    zoho.faults.configure(FaultPlan(error_rate=1.0, error_status=500, path_prefix="/restapi/"))
    entries = [await alice.create(project, day(i % 10), 30) for i in range(30)]
    store = EntryStore(service.runtime.db)
    await wait_for(lambda: _has_all(store, entries))  # PostgreSQL current while Zoho fails
    assert (await _pending(service))["zoho"] == 30
    assert all(zoho.state.logs_for(e.entry_id) == [] for e in entries)
    zoho.faults.configure(FaultPlan(error_rate=0.5, error_status=429, retry_after=0.1,
                                    path_prefix="/restapi/", seed=3))
    await asyncio.sleep(1.0)
    zoho.faults.clear()
    await wait_for(lambda: backlog_drained(service), timeout=60)
    _assert_once_in_zoho(zoho, [e.entry_id for e in entries])


async def test_zoho_logs_whose_answers_were_lost_are_found_not_created_twice(
    service: RunningService, zoho: Zoho, channel: grpc.aio.Channel,
) -> None:
    """Zoho creates the logs but the answers never come (the client times out): the sink's
    next try finds each log by the marker in its notes instead of creating a second one."""
    email = sandbox_email(17)
    alice = Caller(channel, email)
    project = sorted(zoho.state.projects_of(email))[0]
    zoho.faults.force("lost", count=3, seconds=30, path_prefix="/restapi/")
    entries = [await alice.create(project, day(i), 30) for i in range(3)]
    await wait_for(lambda: backlog_drained(service), timeout=60)
    assert zoho.faults.stats()["forced"] == []  # all three answers were lost
    _assert_once_in_zoho(zoho, [e.entry_id for e in entries])


async def _has_all(store: EntryStore, entries: list[pb.TimeEntry]) -> bool:
    versions = await store.versions()
    return all(e.entry_id in versions for e in entries)


async def test_a_refused_entry_goes_to_dead_letters_and_an_admin_can_retry_it(
    service: RunningService, zoho: Zoho, channel: grpc.aio.Channel,
) -> None:
    email = sandbox_email(5)
    alice = Caller(channel, email)
    project = sorted(zoho.state.projects_of(email))[0]
    zoho.state.projects[project]["status"] = "closed"  # Zoho answers 400 for its logs
    entry = await alice.create(project, day(1), 30)
    await wait_for(lambda: backlog_drained(service))
    backlog = await alice.stub.GetSyncBacklog(pb.GetSyncBacklogRequest(), metadata=ADMIN)
    zoho_backlog = next(t for t in backlog.targets if t.target == "zoho")
    assert zoho_backlog.failed_count == 1 and zoho_backlog.pending_count == 0
    assert zoho_backlog.failed[0].entry_id == entry.entry_id
    assert "closed project" in zoho_backlog.failed[0].reason
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await alice.stub.GetSyncBacklog(pb.GetSyncBacklogRequest(), metadata=alice.metadata)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    zoho.state.projects[project]["status"] = "active"
    retried = await alice.stub.RetryDeadLetters(pb.RetryDeadLettersRequest(target="zoho"),
                                                metadata=ADMIN)
    assert retried.requeued_count == 1
    await wait_for(lambda: backlog_drained(service))
    _assert_once_in_zoho(zoho, [entry.entry_id])
    backlog = await alice.stub.GetSyncBacklog(pb.GetSyncBacklogRequest(), metadata=ADMIN)
    assert all(t.failed_count == 0 for t in backlog.targets)


async def test_many_concurrent_writers_with_faults_end_with_equal_counts(
    service: RunningService, zoho: Zoho, channel: grpc.aio.Channel,
) -> None:
    writers = [Caller(channel, sandbox_email(i)) for i in range(6, 16)]
    zoho.faults.configure(FaultPlan(error_rate=0.3, error_status=503, path_prefix="/restapi/",
                                    latency_ms=2, seed=11))
    zoho.faults.force("hang", count=3, seconds=5, path_prefix="/restapi/")
    accepted: list[pb.TimeEntry] = []

    async def write(caller: Caller, count: int) -> None:
        project = sorted(zoho.state.projects_of(caller.email))[0]
        rng = random.Random(caller.email)
        for _ in range(count):
            accepted.append(await caller.create(project, day(rng.randrange(25)),
                                                rng.randrange(1, 600)))

    await asyncio.gather(*(write(caller, 20) for caller in writers for _ in range(2)))
    assert len(accepted) == 400
    await asyncio.sleep(1.0)
    zoho.faults.clear()
    await wait_for(lambda: backlog_drained(service), timeout=90)
    ids = {e.entry_id for e in accepted}
    in_redis = set()
    for caller in writers:
        in_redis |= {e.entry_id for e in await caller.list_all(day(30), day(0))}
    in_postgres = set(await EntryStore(service.runtime.db).versions())
    in_zoho = {entry_id for entry_id in ids if zoho.state.logs_for(entry_id)}
    assert in_redis == in_postgres == in_zoho == ids
    _assert_once_in_zoho(zoho, list(ids))
    assert len(zoho.state.logs) == len(ids)


async def test_redis_killed_during_writes_loses_no_acknowledged_entry(
    service_env: dict[str, str], zoho: Zoho, database_url: str, tmp_path: Path,
) -> None:
    redis_server = EmbeddedRedis(tmp_path / "redis", appendonly=True, appendfsync="always")
    await asyncio.to_thread(redis_server.start)
    try:
        await clean(redis_server.url, database_url)
        env = fast_env(service_env, zoho.url, REDIS_URL=redis_server.url)
        async with running_service(SERVICE, env) as running, \
                grpc.aio.insecure_channel(running.address) as channel:
            await sync_projects(running)
            callers = [Caller(channel, sandbox_email(i)) for i in range(16, 20)]
            acknowledged: list[str] = []
            refused = 0
            stop = asyncio.Event()

            async def write(caller: Caller) -> None:
                nonlocal refused
                project = sorted(zoho.state.projects_of(caller.email))[0]
                while not stop.is_set():
                    try:
                        acknowledged.append((await caller.create(project, day(1), 5)).entry_id)
                    except grpc.aio.AioRpcError as error:
                        assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                        refused += 1
                        await asyncio.sleep(0.05)

            tasks = [asyncio.create_task(write(caller)) for caller in callers]
            await wait_for(lambda: len(acknowledged) >= 100)
            await asyncio.to_thread(redis_server.kill)
            killed_at = len(acknowledged)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(redis_server.start)
            await wait_for(lambda: len(acknowledged) >= killed_at + 100)
            stop.set()
            await asyncio.gather(*tasks)
            assert refused > 0
            await wait_for(lambda: backlog_drained(running), timeout=60)
            in_redis = set()
            for caller in callers:
                in_redis |= {e.entry_id for e in await caller.list_all(day(2), day(0))}
            in_postgres = set(await EntryStore(running.runtime.db).versions())
            assert set(acknowledged) <= in_redis
            assert set(acknowledged) <= in_postgres
            _assert_once_in_zoho(zoho, acknowledged)
    finally:
        await asyncio.to_thread(redis_server.stop)
