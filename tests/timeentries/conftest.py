"""Fixtures for the timeentries tests: a Zoho sandbox on a free port, the service in-process
with fast retry settings, clean timeentries keys and tables, and per-user callers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from syncsuite.timeentries.v1 import timeentries_service_pb2 as pb
from syncsuite.timeentries.v1 import timeentries_service_pb2_grpc as pb_grpc

from services.timeentries.sandbox import SandboxConfig, ZohoSandbox, create_app
from services.timeentries.server import SERVICE
from shared.auth import issue_user_token
from shared.sandbox import FaultInjector, SandboxServer
from shared.server import RunningService, running_service
from tests.conftest import JWT_SECRET

MY_KEYS = ("timeentries:*", "entry:*", "user:*:entries:*", "user:*:projects", "projects:*",
           "zoho:map:*")


@dataclass
class Zoho:
    state: ZohoSandbox
    faults: FaultInjector
    url: str


@pytest.fixture
def zoho() -> Iterator[Zoho]:
    app = create_app(ZohoSandbox(SandboxConfig(projects_limit=1_000_000, window_seconds=1)))
    with SandboxServer(app) as server:
        yield Zoho(app.state.sandbox, app.state.faults, server.url)


def fast_env(service_env: dict[str, str], zoho_url: str, **extra: str) -> dict[str, str]:
    return {
        **service_env,
        "ZOHO_DATA_SOURCE": "sandbox",
        "ZOHO_SANDBOX_URL": zoho_url,
        "ZOHO_PROJECTS_RATE": "5000",
        "ZOHO_CRM_RATE": "5000",
        "ZOHO_TIMEOUT_SECONDS": "2",
        "ZOHO_CONCURRENCY": "8",
        "TIMEENTRIES_RECLAIM_IDLE_SECONDS": "0.3",
        "TIMEENTRIES_RETRY_MAX_SECONDS": "1",
        "TIMEENTRIES_INITIAL_SYNC": "false",
        **extra,
    }


async def clean(redis_url: str, database_url: str) -> None:
    """Removes this service's keys and rows (the session's Redis db and database are shared)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for pattern in MY_KEYS:
            keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(keys), 500):
                await client.delete(*keys[start:start + 500])
    finally:
        await client.aclose()
    connection = await asyncpg.connect(database_url)
    try:
        exists = await connection.fetchval("SELECT to_regclass('timeentries.time_entries')")
        if exists:
            await connection.execute(
                "TRUNCATE timeentries.time_entries, timeentries.projects, "
                "timeentries.project_access, timeentries.zoho_users"
            )
    finally:
        await connection.close()


@pytest.fixture
async def clean_state(redis_url: str, database_url: str) -> None:
    await clean(redis_url, database_url)


@pytest.fixture
async def service(
    service_env: dict[str, str], zoho: Zoho, clean_state: None
) -> AsyncIterator[RunningService]:
    async with running_service(SERVICE, fast_env(service_env, zoho.url)) as running:
        await sync_projects(running)
        yield running


async def sync_projects(running: RunningService) -> None:
    job = await running.runtime.sync.run("projects")
    assert job.status == "COMPLETED", job.error


class Caller:
    """One user's view of the service (a channel and a token)."""

    def __init__(self, channel: grpc.aio.Channel, email: str, token: str | None = None) -> None:
        self.email = email
        self.stub = pb_grpc.TimeEntriesServiceStub(channel)
        token = token or issue_user_token(JWT_SECRET, email)
        self.metadata = (("authorization", f"Bearer {token}"),)

    async def create(self, project_id: str, day: str, minutes: int = 60, description: str = "work",
                     billable: bool = True, request_id: str = "") -> pb.TimeEntry:
        reply = await self.stub.CreateTimeEntry(pb.CreateTimeEntryRequest(
            project_id=project_id, date=day, duration_minutes=minutes, description=description,
            billable=billable, request_id=request_id), metadata=self.metadata, timeout=10)
        return reply.entry

    async def list(self, first: str = "", last: str = "", page_size: int = 0,
                   page_token: str = "") -> pb.ListTimeEntriesResponse:
        return await self.stub.ListTimeEntries(pb.ListTimeEntriesRequest(
            from_date=first, to_date=last, page_size=page_size, page_token=page_token),
            metadata=self.metadata, timeout=10)

    async def list_all(self, first: str = "", last: str = "") -> list[pb.TimeEntry]:
        found: list[pb.TimeEntry] = []
        token = ""
        while True:
            reply = await self.list(first, last, page_size=100, page_token=token)
            found += reply.entries
            token = reply.next_page_token
            if not token:
                return found

    async def projects(self) -> list[str]:
        reply = await self.stub.ListProjects(pb.ListProjectsRequest(), metadata=self.metadata,
                                             timeout=10)
        return [p.project_id for p in reply.projects]


@pytest.fixture
async def channel(service: RunningService) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(service.address) as open_channel:
        yield open_channel


@pytest.fixture
def caller(channel: grpc.aio.Channel) -> Callable[[str], Caller]:
    return lambda email: Caller(channel, email)


async def backlog_drained(running: RunningService) -> bool:
    from services.timeentries.outbox import Outbox
    from services.timeentries.worker import SINK_NAMES

    try:
        report = await Outbox(running.runtime.redis, SINK_NAMES).backlog()
    except RedisError:  # a pooled connection to a Redis that restarted: ask again
        return False
    return all(b.pending == 0 for b in report)
