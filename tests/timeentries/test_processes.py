"""The worker and the service as processes: kill -9 of the worker mid-batch, and grpcurl."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest

from services.timeentries.sandbox import sandbox_email
from services.timeentries.server import SERVICE
from services.timeentries.store import EntryStore
from shared.auth import issue_user_token
from shared.processes import ManagedProcess, free_port, wait_for_health
from shared.sandbox import FaultPlan
from shared.server import running_service
from tests.conftest import JWT_SECRET, ROOT
from tests.grpcurl import grpcurl
from tests.timeentries.conftest import (
    Caller,
    Zoho,
    backlog_drained,
    fast_env,
    sync_projects,
)
from tests.timeentries.test_entries import day
from tests.waiting import wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


async def test_worker_killed_mid_batch_and_restarted_delivers_each_entry_exactly_once(
    service_env: dict[str, str], zoho: Zoho, clean_state: None, tmp_path: Path,
) -> None:
    env = fast_env(service_env, zoho.url, TIMEENTRIES_INPROCESS_WORKERS="false",
                   TIMEENTRIES_BATCH_SIZE="50", TIMEENTRIES_ZOHO_BATCH_SIZE="20")
    zoho.faults.configure(FaultPlan(latency_ms=15, path_prefix="/restapi/"))  # a slow Zoho

    def worker() -> ManagedProcess:
        return ManagedProcess("worker", [sys.executable, "-m", "services.timeentries.worker"],
                              env, tmp_path / "worker.log", cwd=ROOT).start()

    async with running_service(SERVICE, env) as running, \
            grpc.aio.insecure_channel(running.address) as channel:
        await sync_projects(running)
        callers = [Caller(channel, sandbox_email(i)) for i in range(1, 5)]
        ids: list[str] = []
        for caller in callers:
            project = sorted(zoho.state.projects_of(caller.email))[0]
            ids += [(await caller.create(project, day(i % 25), 30)).entry_id for i in range(75)]
        store = EntryStore(running.runtime.db)
        first = worker()
        try:
            await wait_for(lambda: len(zoho.state.logs) >= 20, timeout=60, every=0.02)
            first.kill()  # SIGKILL: mid-batch for the Zoho sink, maybe for PostgreSQL too
        finally:
            first.stop()
        in_zoho_at_kill = len(zoho.state.logs)
        assert in_zoho_at_kill < len(ids)
        second = worker()
        try:
            await wait_for(lambda: backlog_drained(running), timeout=90)
        finally:
            second.stop()
        assert sorted(await store.versions()) == sorted(ids)  # primary key: once each
        counts = {entry_id: len(zoho.state.logs_for(entry_id)) for entry_id in ids}
        assert set(counts.values()) == {1}
        assert len(zoho.state.logs) == len(ids)


async def test_grpcurl_create_and_list_against_the_service_process(
    service_env: dict[str, str], zoho: Zoho, clean_state: None, tmp_path: Path,
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = fast_env(service_env, zoho.url, SYNCSUITE_GRPC_PORT=str(port),
                   TIMEENTRIES_INITIAL_SYNC="true")
    process = ManagedProcess("timeentries", [sys.executable, "-m", "services.timeentries"], env,
                             tmp_path / "service.log", cwd=ROOT).start()
    try:
        await asyncio.to_thread(wait_for_health, address, 60)
        email = sandbox_email(7)
        token = issue_user_token(JWT_SECRET, email)
        service = "syncsuite.timeentries.v1.TimeEntriesService"

        def projects() -> list[dict[str, str]]:
            reply = grpcurl(address, f"{service}/ListProjects", token=token)
            assert reply.ok, reply.stderr
            return list(reply.json().get("projects", []))

        listed = await wait_for(lambda: asyncio.to_thread(projects), timeout=30, every=0.3)
        assert {p["project_id"] for p in listed} == zoho.state.projects_of(email)
        created = grpcurl(address, f"{service}/CreateTimeEntry", token=token, data={
            "project_id": listed[0]["project_id"], "date": day(1), "duration_minutes": 45,
            "description": "via grpcurl", "billable": True})
        assert created.ok, created.stderr
        entry = created.json()["entry"]
        assert entry["version"] == "1" and entry["duration_minutes"] == 45
        found = grpcurl(address, f"{service}/ListTimeEntries", token=token,
                        data={"from_date": day(7), "to_date": day(0)})
        assert found.ok, found.stderr
        assert [e["entry_id"] for e in found.json()["entries"]] == [entry["entry_id"]]
        refused = grpcurl(address, f"{service}/ListTimeEntries")
        assert not refused.ok and "Unauthenticated" in refused.stderr
        bad = grpcurl(address, f"{service}/CreateTimeEntry", token=token, data={
            "project_id": listed[0]["project_id"], "date": day(1), "duration_minutes": 0})
        assert not bad.ok and "duration_minutes" in bad.stderr
    finally:
        process.stop()
