"""Runs that stop early because every further StockX call would fail the same way: our
credentials are refused, or StockX asks for a pause longer than we wait. The run ends at once,
the products it did not reach are queued for the next one, and the job says why."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from services.pricing.sandbox import StockXSandbox, build_sandbox
from services.pricing.settings import (
    SANDBOX_API_KEY,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REFRESH_TOKEN,
    PricingSettings,
)
from services.pricing.stockx import StockXClient
from services.pricing.store import PricingStore, ProductRow
from services.pricing.sync import PriceSync
from shared.sandbox import FaultPlan
from shared.sync import SyncJob
from tests.pricing.conftest import operation, run_prices, settings_for

pytestmark = pytest.mark.timeout(60)

MakeClient = Callable[..., StockXClient]


async def _portfolio(store: PricingStore, sandbox: StockXSandbox, count: int) -> list[str]:
    """``count`` products in a portfolio; in the order a run takes them (held by as many
    users, added at once: by product id)."""
    ids = sorted(product.product_id for product in sandbox.products[:count])
    await store.set_portfolio("a@example.com", [(pid, "", 1) for pid in ids])
    return ids


def _api_requests(sandbox: StockXSandbox) -> int:
    return sum(n for path, n in sandbox.faults.by_path.items() if path.startswith("/v2/"))


def _not_reached(job: SyncJob) -> list[str]:
    return operation(job, "prices").details["notReachedProducts"].split(",")


@pytest.mark.parametrize(("refused", "which"), [
    ({"refresh_token": "rotated-elsewhere"},
     "client id, client secret or refresh token at the token endpoint"),
    ({"api_key": "another-key"}, "the API key"),
], ids=["refresh-token", "api-key"])
async def test_refused_credentials_stop_the_run(
        store: PricingStore, make_client: MakeClient, refused: dict[str, Any], which: str
) -> None:
    sandbox = build_sandbox({}, products=30, variants=6, rate=1000.0, burst=100.0, **refused)
    # a slow token endpoint, and products whose catalog is known: every region of every
    # product in flight waits for the one grant
    sandbox.faults.configure(FaultPlan(latency_ms=100, path_prefix="/oauth/token"))
    await _portfolio(store, sandbox, 20)
    for product in sandbox.products[:20]:
        await store.save_catalog(ProductRow(product.product_id, product.style_id, product.title,
                                            product.brand), product.variants)
    client = make_client(sandbox)
    job = await run_prices(PriceSync(store, client, settings_for(PRICING_CONCURRENCY="4")))
    figures = operation(job, "prices").details
    processed, not_reached = int(figures["productsProcessed"]), _not_reached(job)
    assert job.status == "FAILED"
    assert job.error.startswith(
        f"stopped early: stockx: StockX refused our credentials ({which}): ")
    assert job.error.endswith(f"; {len(not_reached)} products queued for the next run")
    # the products in flight when the first was refused at most; every one of them failed
    assert 1 <= processed <= 4 and processed + len(not_reached) == 20
    assert figures["failCount"] == str(processed)
    assert await store.backlog() == not_reached
    assert sandbox.faults.by_path["/oauth/token"] == 1  # once, however many products wait
    assert _api_requests(sandbox) <= 4 * 3  # one per region of the products in flight
    shown = job.error + repr([op.as_dict() for op in job.operations])
    for secret in (SANDBOX_API_KEY, SANDBOX_CLIENT_SECRET, SANDBOX_REFRESH_TOKEN, "sbx."):
        assert secret not in shown


def _one_at_a_time() -> PricingSettings:
    return settings_for(PRICING_CONCURRENCY="1", PRICING_TIME_BUDGET_SECONDS="30")


async def test_a_retry_after_longer_than_we_wait_stops_this_run_and_the_next_at_once(
        store: PricingStore, sandbox: StockXSandbox, make_client: MakeClient) -> None:
    ids = await _portfolio(store, sandbox, 6)
    settings = _one_at_a_time()
    client = make_client(sandbox, settings)
    await client.tokens.get()
    sandbox.faults.force("status", status=429, retry_after=3600, path_prefix="/v2/")
    started = time.monotonic()
    first = await run_prices(PriceSync(store, client, settings))
    assert first.status == "FAILED"
    assert re.fullmatch(r"stopped early: stockx: HTTP 429 [^;]*\(asked to retry after 3600 s\) "
                        r"after 1 attempt\(s\); 5 products queued for the next run", first.error)
    assert await store.backlog() == ids[1:]

    # the pause holds: the next run sends nothing and stops at its first product
    second = await run_prices(PriceSync(store, client, settings))
    assert re.fullmatch(r"stopped early: stockx: asked us to send nothing before \S+ \(\d+ s from "
                        r"now\), longer than the 300 s we wait; 5 products queued for the next run",
                        second.error)
    assert operation(second, "prices").details["productsProcessed"] == "1"
    assert await store.backlog() == ids[2:] + ids[:1]
    assert _api_requests(sandbox) == 1
    assert time.monotonic() - started < 10  # neither the pause nor the time budget waited for


async def test_a_pause_past_the_time_budget_stops_the_run_at_once(
        store: PricingStore, sandbox: StockXSandbox, make_client: MakeClient) -> None:
    await _portfolio(store, sandbox, 6)
    settings = settings_for(PRICING_CONCURRENCY="2", PRICING_TIME_BUDGET_SECONDS="30")
    client = make_client(sandbox, settings)
    await client.tokens.get()
    # shorter than the 300 s a retry waits (the product that got it sits it out), but past
    # the budget: the other product is refused the pause, and the run stops
    sandbox.faults.force("status", status=429, retry_after=100, path_prefix="/v2/")
    started = time.monotonic()
    job = await run_prices(PriceSync(store, client, settings))
    assert time.monotonic() - started < 10
    figures = operation(job, "prices").details
    assert (figures["productsProcessed"], figures["failCount"]) == ("1", "1")
    assert job.status == "FAILED"
    assert re.fullmatch(r"stopped early: stockx: asked us to send nothing before \S+ \(\d+ s from "
                        r"now\), past this caller's deadline \(\d+ s from now\); 5 products "
                        r"queued for the next run", job.error)
    assert await store.backlog() == _not_reached(job)
