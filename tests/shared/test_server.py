"""The shared server runtime through a real grpc.aio server, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import gc
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from syncsuite.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc
from syncsuite.sync.v1 import sync_pb2, sync_pb2_grpc

from shared.auth import issue_user_token
from shared.backends import EmbeddedPostgres
from shared.config import ConfigError
from shared.paging import encode_page_token
from shared.processes import wait_for_health
from shared.server import ServiceDefinition, run_event_loop, running_service, start_service
from tests.conftest import ADMIN_TOKEN, JWT_SECRET
from tests.shared import no_connections, probe_service
from tests.waiting import wait_for


@pytest.fixture(scope="module")
async def probe(service_env: dict[str, str]) -> AsyncIterator[grpc.aio.Channel]:
    async with running_service(probe_service.SERVICE, service_env) as service:
        async with grpc.aio.insecure_channel(service.address) as channel:
            yield channel


ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


async def test_health_and_ping(probe: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(probe)
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    ping = await diagnostics_pb2_grpc.DiagnosticsServiceStub(probe).Ping(
        diagnostics_pb2.PingRequest(payload="hi"), timeout=5
    )
    assert (ping.payload, ping.service) == ("hi", "probe")


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer wrong-token"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Basic abc"),), grpc.StatusCode.UNAUTHENTICATED),
        (ADMIN, grpc.StatusCode.OK),
    ],
    ids=["no-token", "wrong-token", "wrong-scheme", "admin-token"],
)
async def test_admin_rpc_needs_the_admin_token(
    probe: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], code: grpc.StatusCode
) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(probe)
    try:
        await stub.GetSyncStatus(sync_pb2.GetSyncStatusRequest(), metadata=metadata, timeout=5)
        got = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        got = error.code()
        assert "wrong-token" not in (error.details() or "")
    assert got == code


def _user_token(**overrides: object) -> str:
    return issue_user_token(
        str(overrides.get("secret", JWT_SECRET)), "Ada@Example.com",
        subject="user-1", ttl_seconds=int(overrides.get("ttl", 600)),  # type: ignore[call-overload]
    )


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (lambda: _user_token(ttl=-120), "expired"),
        (lambda: _user_token(secret="not-the-secret-but-long-enough-for-hs256"), "not valid"),
        (lambda: "not.a.jwt", "not valid"),
        (lambda: ADMIN_TOKEN, "not valid"),
    ],
    ids=["expired", "wrongly-signed", "garbage", "admin-token-is-not-a-user"],
)
async def test_user_rpc_refuses_bad_tokens(
    probe: grpc.aio.Channel, token: object, expected: str
) -> None:
    stub = diagnostics_pb2_grpc.DiagnosticsServiceStub(probe)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.WhoAmI(
            diagnostics_pb2.WhoAmIRequest(),
            metadata=(("authorization", f"Bearer {token()}"),),  # type: ignore[operator]
            timeout=5,
        )
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert expected in (raised.value.details() or "")


async def test_user_rpc_accepts_a_valid_token(probe: grpc.aio.Channel) -> None:
    stub = diagnostics_pb2_grpc.DiagnosticsServiceStub(probe)
    reply = await stub.WhoAmI(
        diagnostics_pb2.WhoAmIRequest(),
        metadata=(("authorization", f"Bearer {_user_token()}"),), timeout=5,
    )
    assert (reply.email, reply.subject) == ("ada@example.com", "user-1")


async def test_sync_reports_counts_and_operations(probe: grpc.aio.Channel) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(probe)
    reply = await stub.Sync(sync_pb2.SyncRequest(reason="test"), metadata=ADMIN, timeout=10)
    report = reply.report
    assert report.scope == "quick"
    assert report.status == sync_pb2.SYNC_STATUS_COMPLETED
    assert (report.counts.seen, report.counts.created, report.counts.unchanged) == (3, 1, 2)
    assert [op.name for op in report.operations] == ["customers"]
    assert report.finish_time.ToDatetime() >= report.start_time.ToDatetime()
    stored = await stub.GetSyncJob(
        sync_pb2.GetSyncJobRequest(job_id=report.job_id), metadata=ADMIN, timeout=5
    )
    assert stored.report == report


async def test_a_failing_operation_makes_a_partial_job_with_redacted_error(
    probe: grpc.aio.Channel,
) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(probe)
    partial = (await stub.Sync(sync_pb2.SyncRequest(scope="partial"), metadata=ADMIN,
                               timeout=10)).report
    assert partial.status == sync_pb2.SYNC_STATUS_PARTIAL
    assert [op.ok for op in partial.operations] == [True, False]
    assert "abc123" not in partial.error and "upstream said no" in partial.error
    failed = (await stub.Sync(sync_pb2.SyncRequest(scope="boom"), metadata=ADMIN,
                              timeout=10)).report
    assert failed.status == sync_pb2.SYNC_STATUS_FAILED
    assert "hunter2" not in failed.error


async def test_unknown_scope_is_invalid_argument(probe: grpc.aio.Channel) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(probe)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Sync(sync_pb2.SyncRequest(scope="nope"), metadata=ADMIN, timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "scope" in (raised.value.details() or "") and "quick" in (raised.value.details() or "")


async def test_concurrent_sync_of_a_busy_scope_is_aborted_naming_the_job(
    probe: grpc.aio.Channel,
) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(probe)
    gate = probe_service.GATE.setdefault("gated", probe_service.Gate())
    first = (await stub.Sync(sync_pb2.SyncRequest(scope="gated", background=True),
                             metadata=ADMIN, timeout=5)).report
    assert first.status == sync_pb2.SYNC_STATUS_RUNNING
    await asyncio.wait_for(gate.entered.wait(), 5)
    for scope in ("gated", "also_shared"):  # the second shares a lock key with the first
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Sync(sync_pb2.SyncRequest(scope=scope), metadata=ADMIN, timeout=5)
        assert raised.value.code() == grpc.StatusCode.ABORTED
        assert first.job_id in (raised.value.details() or "")
    status = await stub.GetSyncStatus(
        sync_pb2.GetSyncStatusRequest(scope="gated"), metadata=ADMIN, timeout=5
    )
    assert status.scopes[0].running.job_id == first.job_id
    watch = stub.WatchSync(sync_pb2.WatchSyncRequest(job_id=first.job_id), metadata=ADMIN,
                           timeout=10)
    messages = watch.__aiter__()
    first_message = await messages.__anext__()
    assert first_message.report.status == sync_pb2.SYNC_STATUS_RUNNING
    gate.opened.set()
    reports = [message.report async for message in messages]
    assert reports[-1].status == sync_pb2.SYNC_STATUS_COMPLETED
    assert reports[-1].message == "opened"
    again = await stub.Sync(sync_pb2.SyncRequest(scope="also_shared"), metadata=ADMIN, timeout=5)
    assert again.report.status == sync_pb2.SYNC_STATUS_COMPLETED


async def test_list_sync_jobs_pages_newest_first(probe: grpc.aio.Channel) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(probe)
    started = [
        (await stub.Sync(sync_pb2.SyncRequest(scope="quick"), metadata=ADMIN, timeout=10))
        .report.job_id for _ in range(3)
    ]
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListSyncJobs(
            sync_pb2.ListSyncJobsRequest(scope="quick", page_size=2, page_token=token),
            metadata=ADMIN, timeout=5,
        )
        assert len(page.jobs) <= 2
        seen += [job.job_id for job in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen[:3] == list(reversed(started))
    assert len(seen) == len(set(seen))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListSyncJobs(sync_pb2.ListSyncJobsRequest(page_size=-1), metadata=ADMIN,
                                timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    forged = encode_page_token({"started": "2026-11-23T10:00:00+00:00", "id": "not-a-uuid"})
    naive = encode_page_token({"started": "2026-11-23T10:00:00", "id": str(uuid.uuid4())})
    for request, field in [
        (sync_pb2.ListSyncJobsRequest(page_token="%%%"), "page_token"),
        (sync_pb2.ListSyncJobsRequest(page_token=forged), "page_token"),
        (sync_pb2.ListSyncJobsRequest(page_token=naive), "page_token"),
        (sync_pb2.ListSyncJobsRequest(status=99), "status"),  # proto3 takes unknown numbers
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListSyncJobs(request, metadata=ADMIN, timeout=5)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (raised.value.details() or "").startswith(field)


async def test_unknown_job_is_not_found(probe: grpc.aio.Channel) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(probe)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetSyncJob(sync_pb2.GetSyncJobRequest(job_id="nope"), metadata=ADMIN,
                              timeout=5)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:  # the same mapping on a stream
        async for _ in stub.WatchSync(sync_pb2.WatchSyncRequest(job_id="nope"), metadata=ADMIN,
                                      timeout=5):
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in (raised.value.details() or "")


def test_in_flight_rpc_completes_when_sigterm_arrives(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    process, address = probe_service.start_process(service_env, tmp_path)
    try:
        wait_for_health(address, timeout=30)
        with grpc.insecure_channel(address) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            future = stub.Sync.future(sync_pb2.SyncRequest(scope="slow"), metadata=ADMIN,
                                      timeout=20)
            time.sleep(0.5)  # the job is running: now ask the process to stop
            process.signal(signal.SIGTERM)
            report = future.result(timeout=20).report
        assert report.status == sync_pb2.SYNC_STATUS_COMPLETED
        assert report.progress == 1.0
        assert process.process is not None
        assert process.process.wait(timeout=15) == 0
    finally:
        process.kill()
    assert '"event": "stopped"' in process.log_tail(50)


async def test_a_failing_setup_closes_what_start_opened(
    service_env: dict[str, str], database_url: str
) -> None:
    async def broken_setup(runtime: object) -> None:
        raise RuntimeError("setup went wrong")

    definition = ServiceDefinition(name="broken", default_port=0, setup=broken_setup)
    with pytest.raises(RuntimeError, match="setup went wrong"):
        await start_service(definition, {**service_env, "SYNCSUITE_METRICS_PORT": "0"}, port=0)
    assert await no_connections(database_url, "broken")


def test_services_run_on_uvloop_unless_asyncio_is_chosen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    monkeypatch.delenv("SYNCSUITE_EVENT_LOOP", raising=False)
    assert run_event_loop(loop_module()).startswith("uvloop")
    monkeypatch.setenv("SYNCSUITE_EVENT_LOOP", "asyncio")
    assert run_event_loop(loop_module()).startswith("asyncio")
    monkeypatch.setenv("SYNCSUITE_EVENT_LOOP", "twisted")
    coroutine = loop_module()
    with pytest.raises(ConfigError, match="SYNCSUITE_EVENT_LOOP must be uvloop or asyncio"):
        run_event_loop(coroutine)
    coroutine.close()


async def test_a_refused_rpc_names_its_request_id(probe: grpc.aio.Channel) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(probe)

    async def request_id(metadata: tuple[tuple[str, str], ...] = ()) -> str:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListSyncJobs(sync_pb2.ListSyncJobsRequest(), metadata=metadata, timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        return dict(raised.value.trailing_metadata() or ())["x-request-id"]

    first, second = await request_id(), await request_id()
    assert first != second and len(first) == len(second) == 24
    assert await request_id((("x-request-id", "caller-chosen-7"),)) == "caller-chosen-7"


async def test_a_started_service_keeps_its_startup_heap_out_of_full_collections(
    service_env: dict[str, str],
) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    async with running_service(probe_service.SERVICE, service_env):
        # a full collection walked every object startup left (grpc, protobuf, the modules):
        # 26 ms pauses under load, the tail of CreateTimeEntry's latency
        assert gc.get_freeze_count() > 10_000


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_database_that_went_away_is_unavailable_then_served_again(
    service_env: dict[str, str], tmp_path: Path,
) -> None:
    postgres = EmbeddedPostgres(tmp_path / "pg")
    await asyncio.to_thread(postgres.start)
    try:
        env = {**service_env, "DATABASE_URL": postgres.url}
        async with running_service(probe_service.SERVICE, env) as service, \
                grpc.aio.insecure_channel(service.address) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)

            async def list_jobs() -> sync_pb2.ListSyncJobsResponse:
                return await stub.ListSyncJobs(sync_pb2.ListSyncJobsRequest(), metadata=ADMIN,
                                               timeout=10)

            await list_jobs()
            await asyncio.to_thread(postgres.stop)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await list_jobs()
            # retryable, and says what is missing: not INTERNAL "internal error"
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "PostgreSQL" in (refused.value.details() or "")  # refused, or shut down
            await asyncio.to_thread(postgres.start)
            await wait_for(lambda: _answers(list_jobs), timeout=30)
    finally:
        await asyncio.to_thread(postgres.stop)


async def _answers(call: Callable[[], Awaitable[object]]) -> bool:
    try:
        await call()
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
        return False
    return True
