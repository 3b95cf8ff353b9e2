"""The scheduler as a real process: killed mid-run (another replica takes the run over), refusing
a bad configuration, and end to end with grpcurl against real services."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from services.launch import SuiteProcesses
from services.scheduler.engine import Scheduler
from services.scheduler.store import Claim
from services.suite import SUITE
from shared.processes import ManagedProcess, free_port, wait_for_health
from tests.conftest import ADMIN_TOKEN, ROOT
from tests.grpcurl import grpcurl
from tests.scheduler.conftest import ManualClock, jobs_from
from tests.scheduler.test_service import write_jobs

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]
SCHEDULER = "syncsuite.scheduler.v1.SchedulerService"


def _scheduler_process(env: dict[str, str], jobs: Path, log_dir: Path, name: str,
                       **extra: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    process = ManagedProcess.python_module(name, "services.scheduler", {
        **env, "SCHEDULER_JOBS_FILE": str(jobs), "SCHEDULER_TARGET_CHECK": "off",
        "SCHEDULER_REPLICA": name, "SYNCSUITE_GRPC_PORT": str(port), **extra,
    }, log_dir)
    process.start()
    return process, f"127.0.0.1:{port}"


async def test_a_replica_killed_mid_run_has_its_run_taken_over(
    service_env: dict[str, str], probe_address: str, scheduler_pool: asyncpg.Pool,
    make_engine: Callable[..., Scheduler], job_name: Callable[[str], str], tmp_path: Path,
) -> None:
    name = job_name("killed")
    fields = {"target": probe_address, "scope": "slow", "cron": "0 0 1 1 *"}
    jobs = write_jobs(tmp_path / "jobs.toml", {name: fields})
    process, address = _scheduler_process(
        service_env, jobs, tmp_path, "replica-killed",
        SCHEDULER_LEASE_SECONDS="2", SCHEDULER_HEARTBEAT_SECONDS="0.5")
    try:
        await asyncio.to_thread(wait_for_health, address, 60)
        started = await asyncio.to_thread(
            grpcurl, address, f"{SCHEDULER}/TriggerJob", data={"name": name}, token=ADMIN_TOKEN)
        assert started.ok, started.stderr
        run_id = started.json()["run"]["run_id"]
        target_job = ""
        for _ in range(100):  # until the target accepted the sync
            target_job = await scheduler_pool.fetchval(
                "SELECT target_job_id FROM scheduler.runs WHERE id = $1::uuid", run_id)
            if target_job:
                break
            await asyncio.sleep(0.05)
        assert target_job
    finally:
        await asyncio.to_thread(process.kill)  # SIGKILL: no goodbye, the lease just stops

    # Another replica, whose clock is past the lease, takes the run over and follows the same
    # target job to its end (no second Sync).
    clock = ManualClock(datetime.now(UTC) + timedelta(seconds=5))
    survivor = make_engine(jobs_from({name: fields}), clock, replica="survivor")
    tasks = await survivor.tick()
    assert len(tasks) == 1
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    row = await scheduler_pool.fetchrow(
        "SELECT status, claimed_by, attempts, target_job_id, report FROM scheduler.runs"
        " WHERE id = $1::uuid", run_id)
    assert (row["status"], row["claimed_by"], row["attempts"]) == ("SUCCEEDED", "survivor", 2)
    assert row["target_job_id"] == target_job == row["report"]["job_id"]


async def test_a_run_past_its_deadline_when_taken_over_is_marked_failed(
    probe_address: str, scheduler_pool: asyncpg.Pool, make_engine: Callable[..., Scheduler],
    job_name: Callable[[str], str],
) -> None:
    name = job_name("too-late")
    fields = {"target": probe_address, "scope": "quick", "cron": "0 0 1 1 *", "timeout": "1m"}
    clock = ManualClock(datetime(2025, 2, 1, 12, tzinfo=UTC))
    dying = make_engine(jobs_from({name: fields}), clock, replica="dying")
    run = await dying.store.claim_manual(
        _manual_claim(name, probe_address), clock(), timedelta(seconds=30))
    clock.advance(timedelta(minutes=5))
    survivor = make_engine(jobs_from({name: fields}), clock, replica="survivor-2")
    tasks = await survivor.tick()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    record = await survivor.store.get(run.id)
    assert record.status == "FAILED" and record.error.startswith("abandoned")


def _manual_claim(name: str, address: str) -> Claim:
    return Claim(job=name, missed=(), missed_reason="", latest=None, trigger="manual",
                 forbid_overlap=True, target=address, target_address=address, scope="quick",
                 full=False, timeout=timedelta(minutes=1))


def test_a_bad_jobs_file_stops_the_scheduler_naming_the_job(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    jobs = write_jobs(tmp_path / "jobs.toml", {
        "nightly": {"target": "catalog", "scope": "customers", "cron": "0 23 * * *",
                    "time_zone": "Europe/Pariss"}})
    completed = subprocess.run(
        [sys.executable, "-m", "services.scheduler"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False,
        env={**service_env, "SCHEDULER_JOBS_FILE": str(jobs), "SYNCSUITE_GRPC_PORT": "0"},
    )
    assert completed.returncode == 2
    assert "job 'nightly': time_zone: unknown time zone 'Europe/Pariss'" in completed.stderr
    assert ADMIN_TOKEN not in completed.stderr + completed.stdout


@pytest.fixture(scope="module")
def probe_process(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[str]:
    port = free_port()
    process = ManagedProcess.python_module(
        "probe", "tests.shared.probe_service", {**service_env, "SYNCSUITE_GRPC_PORT": str(port)},
        tmp_path_factory.mktemp("probe-logs"))
    process.start()
    try:
        wait_for_health(f"127.0.0.1:{port}", 60)
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()


def test_end_to_end_with_grpcurl(service_env: dict[str, str], probe_process: str,
                                 tmp_path: Path) -> None:
    name = f"e2e-{time.monotonic_ns() % 10**8}"
    jobs = write_jobs(tmp_path / "jobs.toml", {
        name: {"target": probe_process, "scope": "quick", "cron": "*/15 * * * *",
               "time_zone": "Europe/Paris"}})
    process, address = _scheduler_process(service_env, jobs, tmp_path, "scheduler-e2e")
    try:
        wait_for_health(address, 60)
        listed = grpcurl(address, "list")
        assert SCHEDULER in listed.stdout and "syncsuite.sync.v1.SyncService" in listed.stdout
        refused = grpcurl(address, f"{SCHEDULER}/TriggerJob", data={"name": name})
        assert not refused.ok and "Unauthenticated" in refused.stderr

        triggered = grpcurl(address, f"{SCHEDULER}/TriggerJob", data={"name": name, "wait": True},
                            token=ADMIN_TOKEN)
        assert triggered.ok, triggered.stderr
        run = triggered.json()["run"]
        assert run["status"] == "RUN_STATUS_SUCCEEDED" and run["trigger"] == "RUN_TRIGGER_MANUAL"
        assert run["report"]["status"] == "SYNC_STATUS_COMPLETED"

        on_target = grpcurl(probe_process, "syncsuite.sync.v1.SyncService/ListSyncJobs",
                            data={"scope": "quick", "page_size": 100}, token=ADMIN_TOKEN)
        assert on_target.ok, on_target.stderr
        [job] = [job for job in on_target.json()["jobs"] if job["job_id"] == run["target_job_id"]]
        assert job["reason"] == f"scheduler: {name} (manual trigger, run {run['run_id']})"
        assert job["status"] == "SYNC_STATUS_COMPLETED"

        runs = grpcurl(address, f"{SCHEDULER}/ListRuns", data={"job": name}, token=ADMIN_TOKEN)
        assert runs.ok and runs.json()["runs"][0]["run_id"] == run["run_id"]
        assert runs.json()["tally"]["manual"] == "1"
        jobs_listed = grpcurl(address, f"{SCHEDULER}/ListJobs", token=ADMIN_TOKEN).json()["jobs"]
        [listed_job] = [job for job in jobs_listed if job["name"] == name]
        assert listed_job["next_fire_time_local"].endswith(("+01:00", "+02:00"))
        assert listed_job["last_run"]["run_id"] == run["run_id"]
        assert ADMIN_TOKEN not in runs.stdout + jobs_listed.__repr__()
    finally:
        process.stop()


def test_end_to_end_against_the_real_pricing_service(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    """The shipped jobs file, the real pricing service and its StockX sandbox as processes."""
    members = tuple(member for member in SUITE if member.name in {"pricing", "scheduler"})
    suite = SuiteProcesses(
        env={**service_env, "SCHEDULER_TARGET_CHECK": "warn"}, log_dir=tmp_path,
        grpc_ports={member.name: free_port() for member in members},
        sandbox_ports={member.name: free_port() for member in members}, members=members,
    )
    suite.start(timeout=90)
    try:
        scheduler = f"127.0.0.1:{suite.grpc_port(members[1])}"
        pricing = f"127.0.0.1:{suite.grpc_port(members[0])}"
        triggered = grpcurl(scheduler, f"{SCHEDULER}/TriggerJob",
                            data={"name": "stockx-prices", "wait": True}, token=ADMIN_TOKEN,
                            timeout=120)
        assert triggered.ok, triggered.stderr
        run = triggered.json()["run"]
        assert run["target_address"] == pricing and run["target_job_id"]
        assert run["status"] in {"RUN_STATUS_SUCCEEDED", "RUN_STATUS_PARTIAL"}, run
        on_target = grpcurl(pricing, "syncsuite.sync.v1.SyncService/GetSyncJob",
                            data={"job_id": run["target_job_id"]}, token=ADMIN_TOKEN)
        assert on_target.ok, on_target.stderr
        assert on_target.json()["report"]["reason"] == (
            f"scheduler: stockx-prices (manual trigger, run {run['run_id']})")
    finally:
        suite.stop()
