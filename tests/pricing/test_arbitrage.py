"""The arbitrage query on rows written by hand: which variants qualify, their converted spread,
where to buy and sell, and what leaves a region out (no rate, a stale price, no ask); and that
ListArbitrageOpportunities and ComparePrices agree on a spread right at the threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from syncsuite.pricing.v1 import pricing_service_pb2 as pb

from services.pricing.service import PricingServicer
from services.pricing.store import PricingStore, ProductRow
from tests.pricing.conftest import settings_for

pytestmark = pytest.mark.timeout(30)

NOW = datetime.now(UTC)
FRESH_AFTER = NOW - timedelta(hours=1)
CURRENCIES = ["USD", "GBP", "EUR"]
FACTORS = [1.0, 1.25, None]  # EUR has no rate: its prices are left out


async def _latest(store: PricingStore, rows: list[tuple[str, str, str, str | None, datetime]]
                  ) -> None:
    await store.pool.executemany(
        "INSERT INTO master_market_latest (product_id, variant_id, currency_code, lowest_ask, "
        "snapshot_time) VALUES ($1, $2, $3, $4::numeric, $5)", rows)


async def test_spreads_count_only_fresh_priced_regions_with_a_rate(store: PricingStore) -> None:
    stale = NOW - timedelta(hours=2)
    await _latest(store, [
        ("p1", "a", "USD", "100", NOW), ("p1", "a", "GBP", "100", NOW - timedelta(minutes=5)),
        ("p1", "a", "EUR", "1", NOW),  # no rate: would be the cheapest
        ("p1", "b", "USD", "100", NOW), ("p1", "b", "GBP", "80", NOW),  # 100 vs 100: no spread
        ("p2", "a", "USD", "100", NOW), ("p2", "a", "EUR", "50", NOW),  # one region with a rate
        ("p3", "a", "USD", "120", NOW), ("p3", "a", "GBP", "80", NOW),  # 120 vs 100: 20%
        ("p4", "a", "USD", "100", NOW), ("p4", "a", "GBP", "200", stale),  # GBP is stale
        ("p5", "a", "USD", "100", NOW), ("p5", "a", "GBP", None, NOW),  # GBP has no ask
    ])
    rows = await store.arbitrage(fresh_after=FRESH_AFTER, min_spread=1.0, limit=10,
                                 factors=FACTORS, currencies=CURRENCIES)
    assert [(r.product.product_id, r.variant_id) for r in rows] == [("p1", "a"), ("p3", "a")]
    first, second = rows
    assert first.spread_percent == pytest.approx(25.0)
    assert (first.buy_currency, first.buy_price, first.sell_currency, first.sell_price) == (
        "USD", Decimal("100"), "GBP", Decimal("100"))
    assert (first.buy_converted, first.sell_converted) == pytest.approx((100.0, 125.0))
    assert first.snapshot_time == NOW - timedelta(minutes=5)  # the older of the two prices
    assert second.spread_percent == pytest.approx(20.0)
    assert (second.buy_currency, second.sell_currency) == ("GBP", "USD")

    top = await store.arbitrage(fresh_after=FRESH_AFTER, min_spread=21.0, limit=10,
                                factors=FACTORS, currencies=CURRENCIES)
    assert [r.product.product_id for r in top] == ["p1"]
    assert len(await store.arbitrage(fresh_after=FRESH_AFTER, min_spread=1.0, limit=1,
                                     factors=FACTORS, currencies=CURRENCIES)) == 1


async def test_equal_converted_asks_go_to_the_first_region_listed(store: PricingStore) -> None:
    await _latest(store, [
        ("p1", "a", "USD", "100", NOW), ("p1", "a", "GBP", "80", NOW),  # both 100 converted
        ("p1", "a", "EUR", "150", NOW),
    ])
    rows = await store.arbitrage(fresh_after=FRESH_AFTER, min_spread=1.0, limit=10,
                                 factors=[1.0, 1.25, 1.0], currencies=CURRENCIES)
    assert [(r.buy_currency, r.sell_currency) for r in rows] == [("USD", "EUR")]
    reordered = await store.arbitrage(fresh_after=FRESH_AFTER, min_spread=1.0, limit=10,
                                      factors=[1.25, 1.0, 1.0], currencies=["GBP", "USD", "EUR"])
    assert [r.buy_currency for r in reordered] == ["GBP"]


async def test_a_currency_listed_twice_counts_once_with_its_first_factor(
    store: PricingStore,
) -> None:
    await _latest(store, [("p1", "a", "USD", "100", NOW), ("p2", "a", "USD", "100", NOW),
                          ("p2", "a", "GBP", "100", NOW)])
    rows = await store.arbitrage(fresh_after=FRESH_AFTER, min_spread=0.0, limit=10,
                                 factors=[1.0, 1.25, 2.0], currencies=["USD", "GBP", "USD"])
    assert [(r.product.product_id, r.spread_percent) for r in rows] == [("p2", pytest.approx(25.0))]
    first_without_rate = await store.arbitrage(
        fresh_after=FRESH_AFTER, min_spread=0.0, limit=10, factors=[1.0, None, 1.5],
        currencies=["USD", "GBP", "GBP"])
    assert first_without_rate == []


async def test_both_rpcs_agree_on_a_spread_right_at_the_threshold(store: PricingStore) -> None:
    # 78.21 GBP at 0.79 GBP per USD is 99.00 USD, 10 % above 90.00 USD; in float arithmetic
    # (the arbitrage scan's) it is 9.99999999999998 %
    assert (78.21 * (1 / 0.79) - 90.0) / 90.0 * 100 < 10
    await store.save_catalog(ProductRow("p-edge", "ED1000-001", "Edge", "Nike"), [("a", "9")])
    await _latest(store, [("p-edge", "a", "USD", "90.00", NOW),
                          ("p-edge", "a", "GBP", "78.21", NOW)])
    await store.set_fx_rates({"GBP": Decimal("0.79"), "USD": Decimal(1)}, NOW)
    servicer = PricingServicer(store, settings_for())
    compared = await servicer.ComparePrices(pb.ComparePricesRequest(product_id="p-edge"), None)
    assert [variant.spread_percent for variant in compared.variants] == [10.0]
    listed = await servicer.ListArbitrageOpportunities(
        pb.ListArbitrageOpportunitiesRequest(min_spread_percent=10.0), None)
    assert [(o.product.product_id, o.spread_percent, o.buy_currency, o.sell_currency)
            for o in listed.opportunities] == [("p-edge", 10.0, "USD", "GBP")]
    above = await servicer.ListArbitrageOpportunities(
        pb.ListArbitrageOpportunitiesRequest(min_spread_percent=10.0001), None)
    assert list(above.opportunities) == []
