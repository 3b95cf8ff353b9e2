"""GetLatestPrices' per-replica read cache: two replicas (servicers with their own caches) over
one PostgreSQL see every committed write on their next read, and answer from the cache only
when the product's data version is unchanged."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from syncsuite.pricing.v1 import pricing_service_pb2 as pb

from services.pricing.service import LatestPricesAnswer, PricingServicer
from services.pricing.store import PricingStore, ProductRow, SnapshotRow
from shared.errors import NotFound
from shared.timestamps import from_timestamp, utcnow
from tests.feeds import feeding
from tests.pricing.conftest import settings_for
from tests.waiting import wait_for


def _snapshot(product_id: str, variant_id: str, currency: str, ask: str, taken: datetime
              ) -> SnapshotRow:
    return SnapshotRow(product_id, variant_id, currency, Decimal(ask), Decimal(ask) - 10,
                       None, None, None, None, taken)


async def latest(replica: PricingServicer, request: pb.GetLatestPricesRequest
                 ) -> pb.GetLatestPricesResponse:
    """The servicer answers GetLatestPrices serialized (shared/wire.py)."""
    return pb.GetLatestPricesResponse.FromString(await replica.GetLatestPrices(request, None))


def _asks(reply: pb.GetLatestPricesResponse) -> dict[tuple[str, str], str]:
    return {(p.variant_id, p.currency_code): p.lowest_ask for p in reply.prices}


async def _catalog(store: PricingStore, title: str = "Dunk Low") -> None:
    await store.save_catalog(ProductRow("prod-1", "DD1391-100", title, "Nike"),
                             [("prod-1-a", "9"), ("prod-1-b", "10")])


@pytest.fixture
def replicas(store: PricingStore) -> tuple[PricingServicer, PricingServicer]:
    settings = settings_for()
    return PricingServicer(store, settings), PricingServicer(store, settings)


async def test_replicas_see_a_committed_sync_write_on_their_next_read(
        store: PricingStore, replicas: tuple[PricingServicer, PricingServicer]) -> None:
    await _catalog(store)
    taken = utcnow() - timedelta(minutes=5)
    await store.write_snapshots([_snapshot("prod-1", v, c, "100", taken)
                                 for v in ("prod-1-a", "prod-1-b") for c in ("USD", "GBP")])
    request = pb.GetLatestPricesRequest(product_id="prod-1")
    for replica in replicas:
        first = await latest(replica, request)
        again = await latest(replica, request)
        assert _asks(first) == _asks(again) == {
            (v, c): "100" for v in ("prod-1-a", "prod-1-b") for c in ("USD", "GBP")}
        assert (replica.latest_cache.stats.hits, replica.latest_cache.stats.misses) == (1, 1)
        assert {p.variant_value for p in again.prices} == {"9", "10"}
        assert again.product.title == "Dunk Low"
        price = again.prices[0]
        assert from_timestamp(price.snapshot_time) == taken
        assert price.age_seconds == pytest.approx(300, abs=30)

    # the sync's write path commits a newer snapshot: both replicas answer it at once
    await store.write_snapshots([_snapshot("prod-1", "prod-1-a", "GBP", "120", utcnow())])
    for replica in replicas:
        reply = await latest(replica, request)
        assert _asks(reply)[("prod-1-a", "GBP")] == "120"
        assert _asks(reply)[("prod-1-a", "USD")] == "100"
        assert replica.latest_cache.stats.misses == 2

    # a late, older snapshot changes nothing, so the cached answer stays valid
    await store.write_snapshots([_snapshot("prod-1", "prod-1-a", "GBP", "90", taken)])
    for replica in replicas:
        reply = await latest(replica, request)
        assert _asks(reply)[("prod-1-a", "GBP")] == "120"
        assert (replica.latest_cache.stats.hits, replica.latest_cache.stats.misses) == (2, 2)

    # a catalog refresh (title, sizes) is a new version too
    await store.save_catalog(ProductRow("prod-1", "DD1391-100", "Dunk Low Retro", "Nike"),
                             [("prod-1-a", "9.5"), ("prod-1-b", "10")])
    for replica in replicas:
        reply = await latest(replica, request)
        assert reply.product.title == "Dunk Low Retro"
        assert {p.variant_value for p in reply.prices} == {"9.5", "10"}


async def test_sku_and_currency_subsets_are_cached_apart(
        store: PricingStore, replicas: tuple[PricingServicer, PricingServicer]) -> None:
    replica = replicas[0]
    await _catalog(store)
    await store.write_snapshots([_snapshot("prod-1", "prod-1-a", c, "100", utcnow())
                                 for c in ("USD", "EUR")])
    by_sku = pb.GetLatestPricesRequest(sku="dd1391-100", currency_codes=["EUR"])
    assert {p.currency_code for p in (await latest(replica, by_sku)).prices} == {
        "EUR"}
    everything = await latest(replica, pb.GetLatestPricesRequest(product_id="prod-1"))
    assert {p.currency_code for p in everything.prices} == {"USD", "EUR"}
    await store.write_snapshots([_snapshot("prod-1", "prod-1-a", "EUR", "130", utcnow())])
    assert _asks(await latest(replica, by_sku)) == {("prod-1-a", "EUR"): "130"}


async def test_unknown_product_is_not_cached_and_prices_appear_when_synced(
        store: PricingStore, replicas: tuple[PricingServicer, PricingServicer]) -> None:
    replica = replicas[0]
    request = pb.GetLatestPricesRequest(product_id="prod-1")
    with pytest.raises(NotFound):
        await latest(replica, request)
    assert len(replica.latest_cache) == 0
    await _catalog(store)  # catalog first, prices not yet: still no prices to answer
    with pytest.raises(NotFound, match="no prices for product 'prod-1' in USD, GBP, EUR"):
        await latest(replica, request)
    assert len(replica.latest_cache) == 0
    await store.write_snapshots([_snapshot("prod-1", "prod-1-b", "USD", "99", utcnow())])
    assert _asks(await latest(replica, request)) == {("prod-1-b", "USD"): "99"}


async def test_fed_replicas_answer_from_memory_until_the_trigger_notifies_a_change(
        store: PricingStore, database_url: str) -> None:
    settings = settings_for()
    replicas = PricingServicer(store, settings), PricingServicer(store, settings)
    caches = [replica.latest_cache for replica in replicas]
    await _catalog(store)
    await store.write_snapshots([_snapshot("prod-1", "prod-1-a", "USD", "100", utcnow())])
    by_id = pb.GetLatestPricesRequest(product_id="prod-1")
    by_sku = pb.GetLatestPricesRequest(sku="dd1391-100")

    def notified(count: int) -> Callable[[], bool]:
        return lambda: all(cache.stats.notifications >= count for cache in caches)

    async with feeding(database_url, "pricing_data_changed", *caches):
        for replica in replicas:
            for request in (by_id, by_sku, by_id, by_sku):
                assert _asks(await latest(replica, request)) == {
                    ("prod-1-a", "USD"): "100"}
            assert replica.latest_cache.stats.trusted_hits == 2  # no database round trip

        await store.write_snapshots([_snapshot("prod-1", "prod-1-a", "USD", "105", utcnow())])
        await wait_for(notified(1), what="the new price notified")
        for replica in replicas:
            for request in (by_id, by_sku):
                assert _asks(await latest(replica, request)) == {
                    ("prod-1-a", "USD"): "105"}

        # another product takes the SKU (and sorts first): the SKU's cached answer goes too,
        # and that product has no prices yet
        await store.save_catalog(ProductRow("prod-0", "DD1391-100", "Dunk Low", "Nike"),
                                 [("prod-0-a", "9")])
        await wait_for(notified(2), what="the new product notified")
        for replica in replicas:
            with pytest.raises(NotFound, match="no prices for SKU 'dd1391-100'"):
                await latest(replica, by_sku)
            assert _asks(await latest(replica, by_id)) == {
                ("prod-1-a", "USD"): "105"}

        # TRUNCATE fires no row trigger: its statement trigger says "everything"
        await store.pool.execute("TRUNCATE products CASCADE")
        await wait_for(notified(3), what="the truncation notified")
        for replica in replicas:
            with pytest.raises(NotFound):
                await latest(replica, by_id)


@pytest.mark.parametrize("prices", [0, 1, 60])
def test_an_answer_kept_serialized_parses_as_the_message_built_per_call(prices: int) -> None:
    now = 1_800_000_000.25
    product = pb.Product(product_id="prod-1", sku="DD1391-100", title="Dunk Låw", brand="Nike")
    built, taken = [], []
    for number in range(prices):
        seconds = now - 3600 * (number % 3) + (7200 if number == 1 else 0)  # one in the future
        built.append(pb.VariantPrice(
            product_id="prod-1", variant_id=f"v{number}", variant_value=f"{number / 2:g}",
            currency_code=("USD", "GBP", "EUR")[number % 3], lowest_ask=str(100 + number),
            snapshot_time=Timestamp(seconds=int(seconds))))
        taken.append(float(int(seconds)))
    answer = LatestPricesAnswer.of(product, built, taken)
    expected = pb.GetLatestPricesResponse(product=product, prices=built)
    for price, seconds in zip(expected.prices, taken, strict=True):
        price.age_seconds = max(0.0, now - seconds)
    assert pb.GetLatestPricesResponse.FromString(answer.encode(now)) == expected
