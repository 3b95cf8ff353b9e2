"""Shipping fixtures: a fresh database per test (sync covers every active integration, so tests
must not see each other's), the ShipStation sandbox in-process, and the service wired to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import asyncpg
import grpc
import httpx
import pytest
from syncsuite.shipping.v1 import shipping_service_pb2 as pb
from syncsuite.shipping.v1 import shipping_service_pb2_grpc
from syncsuite.sync.v1 import sync_pb2, sync_pb2_grpc

from services.shipping.sandbox import AccountSpec, SandboxConfig, ShipStationSandbox, credentials_of
from services.shipping.server import build_service, make_client_factory
from services.shipping.settings import ShippingSettings
from shared.backends import Backends
from shared.scratch import scratch_database
from shared.server import RunningService, running_service
from tests.conftest import ADMIN_TOKEN

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)

# Small pages so that a few hundred records make several pages.
FAST_ENV = {
    "SHIPSTATION_PAGE_SIZE": "50",
    "SHIPSTATION_V2_PAGE_SIZE": "50",
    "SHIPSTATION_V1_RATE_LIMIT": "40",
    "SHIPSTATION_V1_RATE_WINDOW": "60",
    "SHIPSTATION_V2_RATE_PER_MINUTE": "6000",
    "SHIPSTATION_V2_BURST": "20",
    "SHIPSTATION_MAX_ATTEMPTS": "3",
}


def small_config(**overrides: object) -> SandboxConfig:
    values: dict[str, object] = {
        "accounts": (AccountSpec(1, products=120, warehouses=3, locations_per_warehouse=2),
                     AccountSpec(2, products=70, warehouses=2, locations_per_warehouse=1)),
        "v1_limit": 1000, "v1_window": 60.0, "v2_rate_per_minute": 60000.0, "v2_burst": 100.0,
        "mutation_share": 0.1,
    }
    values.update(overrides)
    return SandboxConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def shipping_env(
    backends: Backends, service_env: dict[str, str]
) -> AsyncIterator[dict[str, str]]:
    """``service_env`` on a database of this test's own."""
    async with scratch_database(backends.database_url, "shipping_test") as url:
        yield {**service_env, "DATABASE_URL": url, **FAST_ENV}


@dataclass
class Shipping:
    """The service under test, its sandbox and handy stubs."""

    service: RunningService
    sandbox: ShipStationSandbox
    channel: grpc.aio.Channel
    database_url: str

    @property
    def api(self) -> shipping_service_pb2_grpc.ShippingServiceStub:
        return shipping_service_pb2_grpc.ShippingServiceStub(self.channel)

    @property
    def sync_api(self) -> sync_pb2_grpc.SyncServiceStub:
        return sync_pb2_grpc.SyncServiceStub(self.channel)

    async def add_account(self, number: int, name: str | None = None) -> pb.Integration:
        key, secret, v2 = credentials_of(number)
        reply = await self.api.UpsertIntegration(pb.UpsertIntegrationRequest(
            name=name or f"store-{number}", store_id=10000 + number, api_key=key,
            api_secret=secret, v2_api_key=v2), metadata=ADMIN, timeout=10)
        return reply.integration

    async def sync(self, scope: str = "all", **options: bool) -> sync_pb2.SyncReport:
        reply = await self.sync_api.Sync(sync_pb2.SyncRequest(scope=scope, reason="test",
                                                              **options),
                                         metadata=ADMIN, timeout=60)
        return reply.report

    async def fetchval(self, query: str, *args: object) -> object:
        connection = await asyncpg.connect(self.database_url, timeout=10)
        try:
            return await connection.fetchval(query, *args)
        finally:
            await connection.close()

    async def snapshot(self) -> dict[str, object]:
        """Every shipping table as text, to compare before/after."""
        tables = ("integrations", "warehouses", "inventory_warehouses", "inventory_locations",
                  "products", "inventory", "sync_logs")
        return {table: await self.fetchval(
            f"SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '')"
            f" FROM shipping.{table} t") for table in tables}


StartShipping = Callable[..., contextlib.AbstractAsyncContextManager[Shipping]]


@pytest.fixture
def start_shipping(shipping_env: dict[str, str]) -> StartShipping:
    """``async with start_shipping(sandbox, clock=…, sleep=…, env=…) as shipping``."""

    @contextlib.asynccontextmanager
    async def start(
        sandbox: ShipStationSandbox | None = None,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Shipping]:
        sandbox = sandbox or ShipStationSandbox(small_config())
        transport = httpx.ASGITransport(app=sandbox)
        timing = {k: v for k, v in (("clock", clock), ("sleep", sleep)) if v is not None}

        def factory(settings: ShippingSettings):  # type: ignore[no-untyped-def]
            return make_client_factory(settings, transport=transport, **timing)

        environ = {**shipping_env, **(env or {})}
        async with running_service(build_service(factory), environ) as service:
            async with grpc.aio.insecure_channel(service.address) as channel:
                yield Shipping(service, sandbox, channel, environ["DATABASE_URL"])

    return start
