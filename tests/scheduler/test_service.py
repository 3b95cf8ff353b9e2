"""SchedulerService through a real grpc.aio server (in process), PostgreSQL and a probe target."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import grpc
import pytest
from syncsuite.scheduler.v1 import scheduler_service_pb2 as pb
from syncsuite.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from syncsuite.sync.v1 import sync_pb2, sync_pb2_grpc

from services.scheduler import server as scheduler_server
from services.scheduler.caller import SyncCaller
from services.scheduler.config import parse_jobs
from shared.config import Secret
from shared.paging import encode_page_token
from shared.processes import free_port
from shared.server import running_service
from tests.conftest import ADMIN_TOKEN

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


def write_jobs(path: Path, jobs: dict[str, dict[str, str]]) -> Path:
    lines = []
    for name, fields in jobs.items():
        lines.append(f"[jobs.{name}]")
        lines += [f"{key} = {value!r}".replace("'", '"') for key, value in fields.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
async def scheduler(
    service_env: dict[str, str], probe_address: str, tmp_path: Path,
    job_name: Callable[[str], str],
) -> AsyncIterator[tuple[pb_grpc.SchedulerServiceStub, dict[str, str], dict[str, str]]]:
    names = {"quick": job_name("quick"), "slow": job_name("slow"), "yearly": job_name("yearly")}
    jobs = write_jobs(tmp_path / "jobs.toml", {
        names["quick"]: {"target": probe_address, "scope": "quick", "cron": "0 23 * * *",
                         "time_zone": "Europe/Paris"},
        names["slow"]: {"target": probe_address, "scope": "slow", "cron": "*/15 * * * *"},
        names["yearly"]: {"target": probe_address, "scope": "quick", "cron": "0 0 1 1 *",
                          "enabled": "false"},
    })
    env = {**service_env, "SCHEDULER_JOBS_FILE": str(jobs), "SCHEDULER_TARGET_CHECK": "off",
           "SCHEDULER_REPLICA": "in-process"}
    async with running_service(scheduler_server.SERVICE, env) as service:
        async with grpc.aio.insecure_channel(service.address) as channel:
            yield pb_grpc.SchedulerServiceStub(channel), names, env


@pytest.mark.parametrize(
    "metadata", [(), (("authorization", "Bearer not-the-token"),)], ids=["none", "wrong"]
)
async def test_trigger_job_needs_the_admin_token(
    scheduler: tuple[pb_grpc.SchedulerServiceStub, dict[str, str], dict[str, str]],
    metadata: tuple[tuple[str, str], ...],
) -> None:
    stub, names, _ = scheduler
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.TriggerJob(pb.TriggerJobRequest(name=names["quick"]), metadata=metadata,
                              timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    listed = await stub.ListRuns(pb.ListRunsRequest(job=names["quick"]), metadata=ADMIN,
                                 timeout=5)
    assert list(listed.runs) == []  # nothing ran
    for call, request in ((stub.PauseJob, pb.PauseJobRequest(name=names["quick"])),
                          (stub.ListJobs, pb.ListJobsRequest())):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(request, metadata=metadata, timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_trigger_job_runs_now_and_returns_the_run(
    scheduler: tuple[pb_grpc.SchedulerServiceStub, dict[str, str], dict[str, str]],
    probe_address: str,
) -> None:
    stub, names, _ = scheduler
    reply = await stub.TriggerJob(pb.TriggerJobRequest(name=names["quick"], wait=True),
                                  metadata=ADMIN, timeout=30)
    run = reply.run
    assert (run.status, run.trigger, run.job) == (
        pb.RUN_STATUS_SUCCEEDED, pb.RUN_TRIGGER_MANUAL, names["quick"])
    assert run.report.status == sync_pb2.SYNC_STATUS_COMPLETED and run.report.counts.seen == 3
    assert run.report.job_id == run.target_job_id and run.replica == "in-process"
    assert run.HasField("finish_time") and run.attempts == 1
    # The target recorded the job with the scheduler's reason.
    async with grpc.aio.insecure_channel(probe_address) as channel:
        job = await sync_pb2_grpc.SyncServiceStub(channel).GetSyncJob(
            sync_pb2.GetSyncJobRequest(job_id=run.target_job_id), metadata=ADMIN, timeout=5)
    assert job.report.reason == f"scheduler: {names['quick']} (manual trigger, run {run.run_id})"

    jobs = {job.name: job for job in (await stub.ListJobs(
        pb.ListJobsRequest(), metadata=ADMIN, timeout=5)).jobs}
    quick = jobs[names["quick"]]
    assert quick.last_run.run_id == run.run_id and not quick.paused and quick.enabled
    assert quick.overlap == pb.OVERLAP_POLICY_FORBID and quick.time_zone == "Europe/Paris"
    local = datetime.fromisoformat(quick.next_fire_time_local)
    assert (local.hour, local.minute) == (23, 0)
    assert local.timestamp() == quick.next_fire_time.ToSeconds()
    assert not jobs[names["yearly"]].HasField("next_fire_time")  # disabled


async def test_trigger_of_a_running_forbid_job_is_aborted(
    scheduler: tuple[pb_grpc.SchedulerServiceStub, dict[str, str], dict[str, str]],
) -> None:
    stub, names, _ = scheduler
    first = await stub.TriggerJob(pb.TriggerJobRequest(name=names["slow"]), metadata=ADMIN,
                                  timeout=10)
    assert first.run.status == pb.RUN_STATUS_RUNNING
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.TriggerJob(pb.TriggerJobRequest(name=names["slow"]), metadata=ADMIN,
                              timeout=10)
    assert raised.value.code() == grpc.StatusCode.ABORTED
    assert first.run.run_id in (raised.value.details() or "")
    for _ in range(100):
        runs = await stub.ListRuns(pb.ListRunsRequest(job=names["slow"]), metadata=ADMIN,
                                   timeout=5)
        if runs.runs[0].status != pb.RUN_STATUS_RUNNING:
            break
        await asyncio.sleep(0.1)
    assert runs.runs[0].status == pb.RUN_STATUS_SUCCEEDED


async def test_list_runs_pages_filters_and_tallies(
    scheduler: tuple[pb_grpc.SchedulerServiceStub, dict[str, str], dict[str, str]],
) -> None:
    stub, names, _ = scheduler
    for _ in range(3):
        await stub.TriggerJob(pb.TriggerJobRequest(name=names["quick"], wait=True),
                              metadata=ADMIN, timeout=30)
    first = await stub.ListRuns(pb.ListRunsRequest(job=names["quick"], page_size=2),
                                metadata=ADMIN, timeout=5)
    assert len(first.runs) == 2 and first.next_page_token
    second = await stub.ListRuns(
        pb.ListRunsRequest(job=names["quick"], page_size=2, page_token=first.next_page_token),
        metadata=ADMIN, timeout=5)
    assert len(second.runs) == 1 and not second.next_page_token
    ids = [run.run_id for run in [*first.runs, *second.runs]]
    assert len(set(ids)) == 3
    assert first.tally.manual == 3 and first.tally.expected == 0
    failed = await stub.ListRuns(
        pb.ListRunsRequest(job=names["quick"], status=pb.RUN_STATUS_FAILED), metadata=ADMIN,
        timeout=5)
    assert list(failed.runs) == []

    bad = [
        (pb.ListRunsRequest(page_size=-1), grpc.StatusCode.INVALID_ARGUMENT, "page_size"),
        (pb.ListRunsRequest(page_token="nonsense"), grpc.StatusCode.INVALID_ARGUMENT,
         "page_token"),
        (pb.ListRunsRequest(job="no-such-job"), grpc.StatusCode.NOT_FOUND, "no-such-job"),
    ]
    for request, code, text in bad:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListRuns(request, metadata=ADMIN, timeout=5)
        assert raised.value.code() == code and text in (raised.value.details() or "")
    for request in (pb.TriggerJobRequest(name=""), pb.TriggerJobRequest(name="nope")):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.TriggerJob(request, metadata=ADMIN, timeout=5)
        assert raised.value.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                       grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        # proto3 enums are open: a number the server does not know arrives as is.
        (pb.ListRunsRequest(status=99), "status"),
        (pb.ListRunsRequest(page_token=encode_page_token(
            {"scheduled": "2025-01-10T12:00:00+00:00", "id": "not-a-uuid"})), "page_token"),
        (pb.ListRunsRequest(page_token=encode_page_token(
            {"scheduled": "2025-01-10T12:00:00+00:00", "id": 7})), "page_token"),
    ],
    ids=["unknown-status", "id-not-a-uuid", "id-a-number"],
)
async def test_list_runs_refuses_an_unknown_status_or_a_forged_page_token(
    scheduler: tuple[pb_grpc.SchedulerServiceStub, dict[str, str], dict[str, str]],
    request_: pb.ListRunsRequest, field: str,
) -> None:
    stub, _, _ = scheduler
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListRuns(request_, metadata=ADMIN, timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(f"{field}: ")


async def test_pause_survives_a_restart(
    scheduler: tuple[pb_grpc.SchedulerServiceStub, dict[str, str], dict[str, str]],
) -> None:
    stub, names, env = scheduler
    paused = await stub.PauseJob(pb.PauseJobRequest(name=names["slow"]), metadata=ADMIN,
                                 timeout=5)
    assert paused.job.paused and paused.job.HasField("pause_time")
    async with running_service(scheduler_server.SERVICE, env) as restarted:
        async with grpc.aio.insecure_channel(restarted.address) as channel:
            other = pb_grpc.SchedulerServiceStub(channel)
            jobs = {job.name: job for job in (await other.ListJobs(
                pb.ListJobsRequest(), metadata=ADMIN, timeout=5)).jobs}
            assert jobs[names["slow"]].paused and not jobs[names["quick"]].paused
            resumed = await other.ResumeJob(pb.ResumeJobRequest(name=names["slow"]),
                                            metadata=ADMIN, timeout=5)
            assert not resumed.job.paused and not resumed.job.HasField("pause_time")
    jobs = {job.name: job for job in (await stub.ListJobs(
        pb.ListJobsRequest(), metadata=ADMIN, timeout=5)).jobs}
    assert not jobs[names["slow"]].paused


async def test_the_scheduler_prunes_its_own_runs_through_sync(
    scheduler: tuple[pb_grpc.SchedulerServiceStub, dict[str, str], dict[str, str]],
) -> None:
    _, _, env = scheduler
    async with running_service(scheduler_server.SERVICE, env) as service:
        async with grpc.aio.insecure_channel(service.address) as channel:
            reply = await sync_pb2_grpc.SyncServiceStub(channel).Sync(
                sync_pb2.SyncRequest(scope="prune-runs", dry_run=True), metadata=ADMIN,
                timeout=10)
    assert reply.report.status == sync_pb2.SYNC_STATUS_COMPLETED
    assert reply.report.operations[0].details["older_than"]


async def test_start_check_names_the_jobs_whose_target_does_not_answer(
    probe_address: str,
) -> None:
    jobs = parse_jobs({"jobs": {
        "fine": {"target": probe_address, "scope": "quick", "cron": "* * * * *"},
        "wrong-scope": {"target": probe_address, "scope": "nope", "cron": "* * * * *"},
        "down": {"target": f"127.0.0.1:{free_port()}", "scope": "quick", "cron": "* * * * *"},
        "off": {"target": f"127.0.0.1:{free_port()}", "scope": "quick", "cron": "* * * * *",
                "enabled": False},
    }}, {})
    caller = SyncCaller(Secret(ADMIN_TOKEN))
    try:
        problems = await scheduler_server.check_targets(jobs, caller, wait_seconds=0.5,
                                                        probe_timeout=1.0)
    finally:
        await caller.close()
    assert len(problems) == 2
    assert problems[0].startswith("job 'wrong-scope': target") and "scope 'nope'" in problems[0]
    assert problems[1].startswith("job 'down': target") and "does not answer" in problems[1]
