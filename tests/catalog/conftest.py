"""Catalog fixtures: a NetSuite sandbox on a free port, a clean catalog schema and Redis db per
test, the catalog started in-process, and gRPC stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from starlette.types import ASGIApp, Receive, Scope, Send
from syncsuite.catalog.v1 import catalog_service_pb2 as pb
from syncsuite.catalog.v1 import catalog_service_pb2_grpc
from syncsuite.sync.v1 import sync_pb2, sync_pb2_grpc

from services.catalog.sandbox import NetSuiteSandbox, SandboxConfig, create_app
from services.catalog.server import SERVICE
from shared.sandbox import SandboxServer
from shared.server import RunningService, running_service
from tests.conftest import ADMIN_TOKEN

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
SMALL = SandboxConfig(customers=300, items=120)


class FirstPageHook:
    """The sandbox's app, running an armed action once, right after the first page of a
    fetch (or of an id sweep) has been answered: NetSuite changing while a sync reads it."""

    def __init__(self, sandbox: NetSuiteSandbox, app: ASGIApp) -> None:
        self.sandbox = sandbox
        self.app = app
        self._armed: tuple[dict[str, int], Callable[[], object]] | None = None

    def arm(self, action: Callable[[], object], *, sweep: bool = False) -> None:
        self._armed = (self.sandbox.id_sweeps if sweep else self.sandbox.fetches, action)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        armed = self._armed
        before = sum(armed[0].values()) if armed else 0
        await self.app(scope, receive, send)
        # the first page is made in one step with its count: once counted, it is answered
        if armed is not None and self._armed is armed and sum(armed[0].values()) > before:
            self._armed = None
            armed[1]()


class RunningSandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.sandbox = NetSuiteSandbox(config)
        self.app, self.faults = create_app(self.sandbox)
        self.hook = FirstPageHook(self.sandbox, self.app)
        self.server = SandboxServer(self.hook)
        self.url = ""

    def __enter__(self) -> RunningSandbox:
        self.url = self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def mutate(self, **body: Any) -> dict[str, list[int]]:
        response = httpx.post(f"{self.url}/_control/mutate", json=body, timeout=10)
        response.raise_for_status()
        result: dict[str, list[int]] = response.json()
        return result

    def fetches(self, table: str = "customer") -> int:
        return self.sandbox.fetches[table]


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with RunningSandbox(SandboxConfig(customers=SMALL.customers, items=SMALL.items)) as running:
        yield running


@pytest.fixture
async def clean(database_url: str, redis_url: str) -> None:
    """Empties the catalog's tables and this session's Redis db before a test."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        exists = await connection.fetchval("SELECT to_regclass('catalog.customers')")
        if exists:
            await connection.execute(
                "TRUNCATE catalog.customers, catalog.items, catalog.sync_cursors,"
                " catalog.system_logs, catalog.sync_locks, catalog.sync_jobs CASCADE;"
                " REFRESH MATERIALIZED VIEW catalog.customer_kpis_cache"
            )
    finally:
        await connection.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def catalog_env(service_env: dict[str, str], sandbox_url: str, **extra: str) -> dict[str, str]:
    return {
        **service_env,
        "NETSUITE_SANDBOX_URL": sandbox_url,
        "NETSUITE_MAX_ATTEMPTS": "2",
        "NETSUITE_TIMEOUT_SECONDS": "10",
        "CATALOG_VERSION_POLL_SECONDS": "0.2",
        "CATALOG_FETCH_LEASE_SECONDS": "20",
        **extra,
    }


class Catalog:
    """A running catalog with stubs."""

    def __init__(self, service: RunningService, channel: grpc.aio.Channel) -> None:
        self.service = service
        self.channel = channel
        self.stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        self.sync_stub = sync_pb2_grpc.SyncServiceStub(channel)

    async def sync(self, scope: str = "customers", **options: Any) -> sync_pb2.SyncReport:
        reply = await self.sync_stub.Sync(
            sync_pb2.SyncRequest(scope=scope, reason="test", **options), metadata=ADMIN,
            timeout=60,
        )
        return reply.report

    async def search(self, query: str = "", **fields: Any) -> pb.SearchCustomersResponse:
        return await self.stub.SearchCustomers(
            pb.SearchCustomersRequest(query=query, **fields), timeout=30)


@asynccontextmanager
async def start_catalog(env: dict[str, str]) -> AsyncIterator[Catalog]:
    async with running_service(SERVICE, env) as service:
        async with grpc.aio.insecure_channel(service.address) as channel:
            yield Catalog(service, channel)
