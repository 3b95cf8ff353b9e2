"""PricingService and SyncService through a real grpc.aio server (in-process), PostgreSQL and
the StockX sandbox served over TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from syncsuite.pricing.v1 import pricing_service_pb2 as pb
from syncsuite.pricing.v1 import pricing_service_pb2_grpc
from syncsuite.sync.v1 import sync_pb2, sync_pb2_grpc

from services.pricing.sandbox import StockXSandbox, build_sandbox
from services.pricing.server import SERVICE
from services.pricing.settings import PricingSettings
from services.pricing.store import PricingStore, ProductRow
from shared.auth import issue_user_token
from shared.config import ConfigError, load
from shared.sandbox import FaultPlan, SandboxServer
from shared.server import running_service
from tests.conftest import ADMIN_TOKEN, JWT_SECRET

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
USER = (("authorization", f"Bearer {issue_user_token(JWT_SECRET, 'ada@example.com')}"),)


@pytest.fixture(scope="module")
def served_sandbox() -> Iterator[tuple[StockXSandbox, str]]:
    sandbox = build_sandbox({}, products=30, variants=6, rate=500.0, burst=50.0)
    with SandboxServer(sandbox.app) as server:
        yield sandbox, server.url


@pytest.fixture(scope="module")
async def channel(service_env: dict[str, str], served_sandbox: tuple[StockXSandbox, str]
                  ) -> AsyncIterator[grpc.aio.Channel]:
    env = {**service_env, "STOCKX_SANDBOX_URL": served_sandbox[1],
           "STOCKX_RATE_PER_SECOND": "400", "PRICING_STALENESS_HOURS": "8"}
    async with running_service(SERVICE, env) as service:
        async with grpc.aio.insecure_channel(service.address) as opened:
            yield opened


@pytest.fixture
def pricing(channel: grpc.aio.Channel) -> pricing_service_pb2_grpc.PricingServiceStub:
    return pricing_service_pb2_grpc.PricingServiceStub(channel)


@pytest.fixture
def sync(channel: grpc.aio.Channel) -> sync_pb2_grpc.SyncServiceStub:
    return sync_pb2_grpc.SyncServiceStub(channel)


async def _synced(store: PricingStore, sandbox: StockXSandbox,
                  pricing: pricing_service_pb2_grpc.PricingServiceStub,
                  sync: sync_pb2_grpc.SyncServiceStub, count: int = 3) -> list[str]:
    ids = [p.product_id for p in sandbox.products[:count]]
    await pricing.SetPortfolio(pb.SetPortfolioRequest(
        items=[pb.PortfolioItem(product_id=pid) for pid in ids]), metadata=USER, timeout=5)
    reply = await sync.Sync(sync_pb2.SyncRequest(scope="prices", reason="test"),
                            metadata=ADMIN, timeout=30)
    assert reply.report.status == sync_pb2.SYNC_STATUS_COMPLETED, reply.report.error
    return ids


async def _code(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_latest_prices_by_id_and_sku(
        store: PricingStore, served_sandbox: tuple[StockXSandbox, str],
        pricing: pricing_service_pb2_grpc.PricingServiceStub,
        sync: sync_pb2_grpc.SyncServiceStub) -> None:
    sandbox = served_sandbox[0]
    ids = await _synced(store, sandbox, pricing, sync)
    product = sandbox.products[0]
    by_id = await pricing.GetLatestPrices(pb.GetLatestPricesRequest(product_id=ids[0]),
                                          timeout=5)
    assert by_id.product.sku == product.style_id
    assert len(by_id.prices) == len(product.variants) * 3
    assert {p.variant_value for p in by_id.prices} == {size for _, size in product.variants}
    first = next(p for p in by_id.prices if p.currency_code == "GBP")
    expected = sandbox.market_row(product, [v for v, _ in product.variants].index(
        first.variant_id), "GBP")
    assert first.lowest_ask == (expected["lowestAskAmount"] or "")
    assert first.age_seconds < 60
    by_sku = await pricing.GetLatestPrices(pb.GetLatestPricesRequest(
        sku=product.style_id.lower(), currency_codes=["eur"]), timeout=5)
    assert {p.currency_code for p in by_sku.prices} == {"EUR"}
    assert len(by_sku.prices) == len(product.variants)


@pytest.mark.parametrize(("request_", "code", "field"), [
    (pb.GetLatestPricesRequest(product_id="x", currency_codes=["XYZ"]),
     grpc.StatusCode.INVALID_ARGUMENT, "currency_codes"),
    (pb.GetLatestPricesRequest(product_id="x", currency_codes=["JPY"]),
     grpc.StatusCode.INVALID_ARGUMENT, "currency_codes"),
    (pb.GetLatestPricesRequest(), grpc.StatusCode.INVALID_ARGUMENT, "sku"),
    (pb.GetLatestPricesRequest(sku="   "), grpc.StatusCode.INVALID_ARGUMENT, "sku"),
    (pb.GetLatestPricesRequest(product_id="no such/id"), grpc.StatusCode.INVALID_ARGUMENT,
     "product_id"),
    (pb.GetLatestPricesRequest(product_id="unknown-product"), grpc.StatusCode.NOT_FOUND, ""),
    (pb.GetLatestPricesRequest(sku="NO-SUCH-SKU"), grpc.StatusCode.NOT_FOUND, ""),
], ids=["unknown-currency", "currency-not-synced", "no-product", "empty-sku", "bad-id",
        "unknown-product", "unknown-sku"])
async def test_get_latest_prices_validation(
        pricing: pricing_service_pb2_grpc.PricingServiceStub, request_: pb.GetLatestPricesRequest,
        code: grpc.StatusCode, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await pricing.GetLatestPrices(request_, timeout=5)
    assert raised.value.code() == code
    assert (raised.value.details() or "").startswith(field)


async def test_compare_prices_and_arbitrage_with_stored_fx(
        store: PricingStore, served_sandbox: tuple[StockXSandbox, str],
        pricing: pricing_service_pb2_grpc.PricingServiceStub,
        sync: sync_pb2_grpc.SyncServiceStub) -> None:
    ids = await _synced(store, served_sandbox[0], pricing, sync, count=4)
    no_rates = await pricing.ComparePrices(pb.ComparePricesRequest(product_id=ids[0]), timeout=5)
    assert set(no_rates.currencies_without_rate) == {"EUR", "GBP"}
    assert await _code(pricing.SetFxRates(pb.SetFxRatesRequest(
        rates=[pb.FxRate(currency_code="GBP", rate="0.8")]), timeout=5)
    ) == grpc.StatusCode.UNAUTHENTICATED
    as_of = Timestamp()
    as_of.GetCurrentTime()
    updated = await pricing.SetFxRates(pb.SetFxRatesRequest(
        base_currency="USD", as_of=as_of,
        rates=[pb.FxRate(currency_code="GBP", rate="0.8"),
               pb.FxRate(currency_code="EUR", rate="0.9")]), metadata=ADMIN, timeout=5)
    assert set(updated.updated_currencies) >= {"GBP", "EUR"}
    older = Timestamp(seconds=as_of.seconds - 3600)
    ignored = await pricing.SetFxRates(pb.SetFxRatesRequest(
        as_of=older, rates=[pb.FxRate(currency_code="GBP", rate="5")]), metadata=ADMIN, timeout=5)
    assert "GBP" not in ignored.updated_currencies  # an older rate never replaces a newer one
    compared = await pricing.ComparePrices(pb.ComparePricesRequest(
        product_id=ids[0], base_currency="EUR"), timeout=5)
    assert not compared.currencies_without_rate and compared.base_currency == "EUR"
    variant = next(v for v in compared.variants if v.spread_percent > 0)
    by_currency = {r.currency_code: r for r in variant.regions}
    gbp = by_currency["GBP"]
    assert Decimal(gbp.lowest_ask_converted) == (
        Decimal(gbp.lowest_ask) / Decimal("0.8") * Decimal("0.9")).quantize(Decimal("0.01"))
    asks = {code: Decimal(r.lowest_ask_converted) for code, r in by_currency.items()
            if r.lowest_ask_converted}
    low, high = min(asks.values()), max(asks.values())
    assert variant.spread_percent == pytest.approx(float((high - low) / low * 100), rel=1e-3)

    listed = await pricing.ListArbitrageOpportunities(pb.ListArbitrageOpportunitiesRequest(
        min_spread_percent=1.0, limit=5), timeout=5)
    spreads = [o.spread_percent for o in listed.opportunities]
    assert 0 < len(spreads) <= 5 and spreads == sorted(spreads, reverse=True)
    assert all(s >= 1.0 for s in spreads)
    top = listed.opportunities[0]
    assert top.buy_currency != top.sell_currency and top.product.product_id in ids
    assert await _code(pricing.ListArbitrageOpportunities(pb.ListArbitrageOpportunitiesRequest(
        min_spread_percent=-1), timeout=5)) == grpc.StatusCode.INVALID_ARGUMENT
    assert await _code(pricing.ComparePrices(pb.ComparePricesRequest(
        product_id=ids[0], base_currency="XX"), timeout=5)) == grpc.StatusCode.INVALID_ARGUMENT
    assert await _code(pricing.ComparePrices(pb.ComparePricesRequest(sku=""), timeout=5)
                       ) == grpc.StatusCode.INVALID_ARGUMENT


async def test_freshness_per_currency(
        store: PricingStore, served_sandbox: tuple[StockXSandbox, str],
        pricing: pricing_service_pb2_grpc.PricingServiceStub,
        sync: sync_pb2_grpc.SyncServiceStub) -> None:
    await _synced(store, served_sandbox[0], pricing, sync, count=2)
    await store.pool.execute(
        "UPDATE master_market_latest SET snapshot_time = now() - interval '10 hours' "
        "WHERE currency_code = 'EUR'")
    reply = await pricing.GetFreshness(pb.GetFreshnessRequest(), timeout=5)
    by_code = {c.currency_code: c for c in reply.currencies}
    assert [c.currency_code for c in reply.currencies] == ["USD", "GBP", "EUR"]
    assert (by_code["USD"].fresh_products, by_code["USD"].products) == (2, 2)
    assert (by_code["EUR"].fresh_products, by_code["EUR"].products) == (0, 2)
    assert by_code["EUR"].average_age_hours == pytest.approx(10, abs=0.1)
    assert by_code["GBP"].snapshots > 0 and reply.staleness_threshold_hours == 8


async def test_views_and_portfolio_are_per_user(
        store: PricingStore, pricing: pricing_service_pb2_grpc.PricingServiceStub) -> None:
    assert await _code(pricing.RecordProductView(pb.RecordProductViewRequest(product_id="p-1"),
                                                 timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
    for expected in (1, 2):
        seen = await pricing.RecordProductView(pb.RecordProductViewRequest(product_id="p-1"),
                                               metadata=USER, timeout=5)
        assert seen.view_count == expected
    assert await _code(pricing.RecordProductView(pb.RecordProductViewRequest(), metadata=USER,
                                                 timeout=5)) == grpc.StatusCode.INVALID_ARGUMENT
    other = (("authorization", f"Bearer {issue_user_token(JWT_SECRET, 'bo@example.com')}"),)
    await pricing.SetPortfolio(pb.SetPortfolioRequest(items=[
        pb.PortfolioItem(product_id="p-1", quantity=2)]), metadata=USER, timeout=5)
    added = await pricing.AddPortfolioItems(pb.AddPortfolioItemsRequest(items=[
        pb.PortfolioItem(product_id="p-1"), pb.PortfolioItem(product_id="p-2", variant_id="v")]),
        metadata=USER, timeout=5)
    assert [(i.product_id, i.variant_id, i.quantity) for i in added.items] == [
        ("p-1", "", 3), ("p-2", "v", 1)]
    assert not (await pricing.GetPortfolio(pb.GetPortfolioRequest(), metadata=other,
                                           timeout=5)).items
    replaced = await pricing.SetPortfolio(pb.SetPortfolioRequest(items=[
        pb.PortfolioItem(product_id="p-3")]), metadata=USER, timeout=5)
    assert [i.product_id for i in replaced.items] == ["p-3"]
    assert await _code(pricing.AddPortfolioItems(pb.AddPortfolioItemsRequest(items=[
        pb.PortfolioItem(product_id="p-1", quantity=-1)]), metadata=USER, timeout=5)
    ) == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_product_without_prices_is_not_found(
        store: PricingStore, pricing: pricing_service_pb2_grpc.PricingServiceStub) -> None:
    await store.save_catalog(ProductRow("prod-x", "AB1234-001", "Dunk", "Nike"), [("v1", "9")])
    calls = [
        pricing.GetLatestPrices(pb.GetLatestPricesRequest(product_id="prod-x"), timeout=5),
        pricing.GetLatestPrices(pb.GetLatestPricesRequest(sku="ab1234-001",
                                                          currency_codes=["GBP"]), timeout=5),
        pricing.ComparePrices(pb.ComparePricesRequest(product_id="prod-x"), timeout=5),
    ]
    expected = ["no prices for product 'prod-x' in USD, GBP, EUR",
                "no prices for SKU 'ab1234-001' in GBP",
                "no prices for product 'prod-x' in USD, GBP, EUR"]
    for call, details in zip(calls, expected, strict=True):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert (raised.value.code(), raised.value.details()) == (
            grpc.StatusCode.NOT_FOUND, details)


MAX_INT32 = 2**31 - 1


@pytest.mark.parametrize(("rpc", "request_", "details"), [
    ("AddPortfolioItems", pb.AddPortfolioItemsRequest(items=[
        pb.PortfolioItem(product_id="p-1", quantity=MAX_INT32)]),
     "items[0].quantity: must be between 0 and 1000000"),
    ("SetPortfolio", pb.SetPortfolioRequest(items=[
        pb.PortfolioItem(product_id="p-2", quantity=600_000),
        pb.PortfolioItem(product_id="p-2", quantity=600_000)]),
     "items[1].quantity: the items of this product add up to 1200000; at most 1000000"),
    ("AddPortfolioItems", pb.AddPortfolioItemsRequest(items=[
        pb.PortfolioItem(product_id="p-3"), pb.PortfolioItem(product_id="held", quantity=2)]),
     "items[1].quantity: with the quantity already held this would be more than 1000000"),
    ("AddPortfolioItems", pb.AddPortfolioItemsRequest(items=[
        pb.PortfolioItem(product_id="held-long-ago", quantity=1)]),
     "items[0].quantity: with the quantity already held this would be more than 1000000"),
    ("SetFxRates", pb.SetFxRatesRequest(rates=[pb.FxRate(currency_code="GBP", rate="1e999999")]),
     "rates[0].rate: must be between 0.000000001 and 1000000000"),
    ("SetFxRates", pb.SetFxRatesRequest(rates=[pb.FxRate(currency_code="EUR", rate="0.9"),
                                               pb.FxRate(currency_code="GBP", rate="1e-999999")]),
     "rates[1].rate: must be between 0.000000001 and 1000000000"),
    ("SetFxRates", pb.SetFxRatesRequest(rates=[pb.FxRate(currency_code="GBP",
                                                         rate="0." + "7" * 40)]),
     "rates[0].rate: must have at most 30 digits"),
], ids=["quantity-over-int32", "merged-quantities", "added-to-held", "added-to-held-at-int32",
        "rate-too-large", "rate-too-small", "rate-too-long"])
async def test_quantities_and_rates_out_of_range_are_invalid_arguments(
        store: PricingStore, pricing: pricing_service_pb2_grpc.PricingServiceStub, rpc: str,
        request_: object, details: str) -> None:
    await pricing.SetPortfolio(pb.SetPortfolioRequest(items=[
        pb.PortfolioItem(product_id="held", quantity=999_999)]), metadata=USER, timeout=5)
    # held before quantities were bounded: the sum must not overflow the integer column
    await store.pool.execute(
        "INSERT INTO portfolio_items (user_email, product_id, quantity) VALUES ($1, $2, $3)",
        "ada@example.com", "held-long-ago", MAX_INT32)
    held = await pricing.GetPortfolio(pb.GetPortfolioRequest(), metadata=USER, timeout=5)
    metadata = ADMIN if rpc == "SetFxRates" else USER
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(pricing, rpc)(request_, metadata=metadata, timeout=5)
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, details)
    assert await pricing.GetPortfolio(pb.GetPortfolioRequest(), metadata=USER,
                                      timeout=5) == held  # nothing was added
    assert await store.fx_rates() == {}


async def test_concurrent_sync_is_aborted(
        store: PricingStore, served_sandbox: tuple[StockXSandbox, str],
        pricing: pricing_service_pb2_grpc.PricingServiceStub,
        sync: sync_pb2_grpc.SyncServiceStub) -> None:
    sandbox = served_sandbox[0]
    await pricing.SetPortfolio(pb.SetPortfolioRequest(items=[
        pb.PortfolioItem(product_id=p.product_id) for p in sandbox.products[5:8]]),
        metadata=USER, timeout=5)
    sandbox.faults.configure(FaultPlan(latency_ms=150, path_prefix="/v2/"))
    try:
        started = await sync.Sync(sync_pb2.SyncRequest(scope="prices", background=True),
                                  metadata=ADMIN, timeout=10)
        job_id = started.report.job_id
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await sync.Sync(sync_pb2.SyncRequest(scope="prices"), metadata=ADMIN, timeout=10)
        assert raised.value.code() == grpc.StatusCode.ABORTED
        assert job_id in (raised.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as retention:
            await sync.Sync(sync_pb2.SyncRequest(scope="retention"), metadata=ADMIN, timeout=10)
        assert retention.value.code() == grpc.StatusCode.ABORTED  # shares the lock
    finally:
        sandbox.faults.clear()
    for _ in range(100):
        job = await sync.GetSyncJob(sync_pb2.GetSyncJobRequest(job_id=job_id), metadata=ADMIN,
                                    timeout=5)
        if job.report.status != sync_pb2.SYNC_STATUS_RUNNING:
            break
        await asyncio.sleep(0.1)
    assert job.report.status == sync_pb2.SYNC_STATUS_COMPLETED
    prices = next(op for op in job.report.operations if op.name == "prices")
    assert prices.details["productsProcessed"] == "3"


@pytest.mark.parametrize(("variable", "value"), [
    ("PRICING_CONCURRENCY", "0"), ("PRICING_MAX_PRODUCTS_PER_RUN", "-3"),
    ("STOCKX_RATE_PER_SECOND", "0"), ("PRICING_TIME_BUDGET_SECONDS", "0"),
    ("PRICING_RETENTION_DAYS", "-1"), ("PRICING_STALENESS_HOURS", "-1"),
    ("STOCKX_PACING_MARGIN_MS", "-5"), ("STOCKX_MAX_ATTEMPTS", "0"),
    ("STOCKX_TIMEOUT_SECONDS", "-1"), ("STOCKX_TIMEOUT_SECONDS", "0"),
    ("STOCKX_DAILY_LIMIT", "-5"), ("STOCKX_DAILY_LIMIT", "0"),
    ("PRICING_POPULAR_MIN_VIEWS", "0"), ("STOCKX_TOKEN_REFRESH_MARGIN_SECONDS", "-1"),
])
def test_settings_out_of_range_are_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load(PricingSettings, {variable: value})
