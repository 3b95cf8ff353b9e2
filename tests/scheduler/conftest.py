"""Fixtures of the scheduler tests: a pool on the scheduler schema, a probe target service, an
injectable clock and engines (scheduler replicas) built on them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.scheduler.caller import SyncCaller
from services.scheduler.config import parse_jobs
from services.scheduler.engine import Scheduler
from services.scheduler.store import Claim, ClaimResult, DueTime, JobSchedule, SchedulerStore
from shared.config import Secret
from shared.db import create_pool
from shared.migrations import apply_migrations, discover
from shared.server import SYNC_MIGRATIONS, running_service
from tests.conftest import ADMIN_TOKEN
from tests.shared import probe_service

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "scheduler" / "migrations"


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, value: datetime) -> None:
        self.now = value

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


@pytest.fixture(scope="session")
async def scheduler_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "scheduler", max_size=6)
    async with pool.acquire() as connection:
        await apply_migrations(
            connection, "scheduler",
            discover("sync", SYNC_MIGRATIONS) + discover("scheduler", MIGRATIONS),
        )
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def probe_address(service_env: dict[str, str]) -> AsyncIterator[str]:
    """A real service (tests/shared/probe_service.py) the jobs call: scopes quick, slow, boom…"""
    async with running_service(probe_service.SERVICE, service_env) as service:
        yield service.address


@pytest.fixture
def job_name() -> Callable[[str], str]:
    """Unique job names, so tests sharing the session database never see each other's runs."""
    suffix = uuid.uuid4().hex[:8]
    return lambda base: f"{base}-{suffix}"


def jobs_from(spec: dict[str, dict[str, Any]], environ: dict[str, str] | None = None
              ) -> list[Any]:
    return parse_jobs({"jobs": spec}, environ or {})


@pytest.fixture
async def make_engine(scheduler_pool: asyncpg.Pool) -> AsyncIterator[Callable[..., Scheduler]]:
    """Builds scheduler replicas (stopped at the end of the test); ``store`` replaces the
    replica's store (a subclass of the real one)."""
    made: list[tuple[Scheduler, SyncCaller]] = []

    def build(jobs: list[Any], clock: ManualClock, replica: str = "replica-a",
              store: SchedulerStore | None = None, **options: Any) -> Scheduler:
        caller = SyncCaller(Secret(ADMIN_TOKEN), backoff_base=0.05, backoff_cap=0.2)
        engine = Scheduler(jobs, store or SchedulerStore(scheduler_pool, replica), caller,
                           clock=clock, **options)
        made.append((engine, caller))
        return engine

    yield build
    for engine, caller in made:
        await engine.wait_for_runs(10)
        await engine.stop()
        await caller.close()


@pytest.fixture
def paris_night() -> Iterator[ManualClock]:
    yield ManualClock(datetime(2025, 1, 10, 12, 0, tzinfo=UTC))


async def claim_as_dead_replica(
    pool: asyncpg.Pool, replica: str, job: str, due: datetime, target_address: str,
    lease: timedelta,
) -> ClaimResult:
    """``replica`` registers ``job`` (every 5 minutes, scope ``quick`` of the probe at
    ``target_address``) and claims its due time ``due``, then does nothing more, as a replica
    that died would."""
    dead = SchedulerStore(pool, replica)
    await dead.ensure_jobs([JobSchedule(job, True, "*/5 * * * *", "UTC")],
                           due - timedelta(minutes=3))
    return await dead.claim(Claim(
        job=job, missed=(), missed_reason="", latest=DueTime(due, due), trigger="schedule",
        forbid_overlap=True, target="probe", target_address=target_address, scope="quick",
        full=False, timeout=timedelta(minutes=5)), due, lease)
