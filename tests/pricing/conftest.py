"""Pricing fixtures: the pricing schema on the session database, a fresh in-process StockX
sandbox per test, and a client wired to it with fast limits (tests never wait on real rate
limits)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.pricing.sandbox import StockXSandbox, build_sandbox
from services.pricing.settings import PricingSettings
from services.pricing.stockx import StockXClient, create_stockx_client
from services.pricing.store import PricingStore
from services.pricing.sync import PriceSync
from shared.config import load
from shared.db import create_pool
from shared.migrations import apply_migrations, discover
from shared.sync import Operation, SyncJob
from shared.upstream import RetryPolicy

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "pricing" / "migrations"
TABLES = ("products", "product_variants", "master_market_data", "master_market_latest",
          "portfolio_items", "product_views", "sync_backlog", "fx_rates")
FAST = {"STOCKX_DATA_SOURCE": "sandbox", "STOCKX_SANDBOX_URL": "http://sandbox",
        "STOCKX_RATE_PER_SECOND": "1000"}


@pytest.fixture(scope="session")
async def pricing_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "pricing", max_size=12)
    async with pool.acquire() as connection:
        await apply_migrations(connection, "pricing", discover("pricing", MIGRATIONS))
    yield pool
    await pool.close()


@pytest.fixture
async def store(pricing_pool: asyncpg.Pool) -> PricingStore:
    await pricing_pool.execute(f"TRUNCATE {', '.join(TABLES)}")
    return PricingStore(pricing_pool)


@pytest.fixture
def sandbox() -> StockXSandbox:
    return build_sandbox({}, products=40, variants=6, rate=1000.0, burst=100.0)


def settings_for(**env: str) -> PricingSettings:
    return load(PricingSettings, {**FAST, **env})


async def run_prices(sync: PriceSync, *, full: bool = False) -> SyncJob:
    """One `prices` run, finished as the sync registry finishes it (FAILED with what the run
    raised)."""
    job = SyncJob("prices", full=full)
    try:
        await sync.run(job)
    except Exception as error:
        job.finish(error)
    else:
        job.finish()
    return job


def operation(job: SyncJob, name: str) -> Operation:
    return next(op for op in job.operations if op.name == name)


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., StockXClient]]:
    clients: list[StockXClient] = []

    def make(sandbox: StockXSandbox, settings: PricingSettings | None = None,
             **kwargs: Any) -> StockXClient:
        settings = settings or settings_for()
        kwargs.setdefault("retry", RetryPolicy(max_attempts=2, base_delay=0.001))
        client = create_stockx_client(
            settings.connection(), settings, transport=httpx.ASGITransport(app=sandbox.app),
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
