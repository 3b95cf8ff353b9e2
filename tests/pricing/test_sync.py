"""The `prices` sync against real PostgreSQL and the in-process StockX sandbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from services.pricing.candidates import select_candidates
from services.pricing.outcomes import split_answer
from services.pricing.sandbox import StockXSandbox
from services.pricing.stockx import MarketData, StockXClient
from services.pricing.store import PricingStore, SnapshotRow
from services.pricing.sync import PriceSync
from shared.sync import Counts, SyncJob
from shared.timestamps import utcnow
from tests.pricing.conftest import operation, run_prices, settings_for

MakeClient = Callable[..., StockXClient]


def test_priority_order_dedup_and_cap() -> None:
    tiers = [["b1"], ["p1", "p2", "b1"], ["v9", "p2", "v8"], ["r1", "v9", "r2"]]
    chosen = select_candidates(tiers, cap=5)
    assert chosen.chosen == ["b1", "p1", "p2", "v9", "v8"]
    assert chosen.over_cap == ["r1", "r2"]
    assert chosen.counts_by_tier() == {"backlog": 1, "portfolio": 2, "popular": 2, "recent": 0}
    fresh = select_candidates(tiers, cap=5, fresh={"p1", "v9"})
    assert fresh.chosen == ["b1", "p2", "v8", "r1", "r2"] and fresh.skipped_fresh == ["p1", "v9"]
    assert select_candidates(tiers, cap=5, fresh={"p1"}, full=True).chosen[1] == "p1"


def _counts(**nonzero: int) -> dict[str, int]:
    return {**Counts().as_dict(), **nonzero}


async def test_job_counts_are_the_products_counts(
        store: PricingStore, sandbox: StockXSandbox, make_client: MakeClient) -> None:
    products = sandbox.products[:3]
    variants = sum(len(product.variants) for product in products)
    await store.set_portfolio("a@example.com", [(p.product_id, "", 1) for p in products])
    client = make_client(sandbox)
    first = await run_prices(PriceSync(store, client, settings_for()))
    assert operation(first, "prices").details["totalSnapshots"] == str(3 * variants)
    assert first.counts.as_dict() == _counts(seen=3 * variants, created=3 * variants)
    fresh = await run_prices(PriceSync(store, client, settings_for()))
    assert fresh.counts.as_dict() == _counts(skipped=3)
    sandbox.failing_currencies = {"GBP"}
    failing = await run_prices(PriceSync(store, client, settings_for()), full=True)
    assert failing.status == "PARTIAL"
    assert failing.counts.as_dict() == _counts(seen=2 * variants, updated=2 * variants, failed=3)


async def test_priority_order_and_cap_from_the_database(
        store: PricingStore, sandbox: StockXSandbox, make_client: MakeClient) -> None:
    ids = [product.product_id for product in sandbox.products]
    now = utcnow()
    await store.set_portfolio("a@example.com", [(ids[0], "", 1), (ids[1], "", 1)])
    await store.set_portfolio("b@example.com", [(ids[1], "", 2)])
    for _ in range(5):
        await store.record_view(ids[2], now)
    for _ in range(3):
        await store.record_view(ids[3], now - timedelta(days=3))  # popular, not recent
    await store.record_view(ids[4], now)  # recent only
    await store.record_view(ids[5], now - timedelta(days=2))  # neither
    sync = PriceSync(store, make_client(sandbox),
                     settings_for(PRICING_MAX_PRODUCTS_PER_RUN="4"))
    selection = await sync.select(full=False)
    assert selection.chosen == [ids[1], ids[0], ids[2], ids[3]]  # most-held portfolio first
    assert selection.over_cap == [ids[4]]
    job = await run_prices(sync)
    assert job.status == "COMPLETED", job.error
    figures = operation(job, "prices").details
    assert figures["productsProcessed"] == "4" and figures["successCount"] == "4"
    products = sorted(op.name for op in job.operations if op.name.startswith("product "))
    assert products == sorted(f"product {pid}" for pid in selection.chosen)
    assert int(figures["totalSnapshots"]) == await store.snapshot_count()


async def test_smart_refresh_skips_fresh_products(
        store: PricingStore, sandbox: StockXSandbox, make_client: MakeClient) -> None:
    ids = [product.product_id for product in sandbox.products[:3]]
    await store.set_portfolio("a@example.com", [(pid, "", 1) for pid in ids])
    client = make_client(sandbox)
    sync = PriceSync(store, client, settings_for())
    first = await run_prices(sync)
    assert operation(first, "prices").details["productsProcessed"] == "3"
    requests = client.api.stats.requests
    again = await run_prices(sync)
    assert operation(again, "candidates").details["skipped_fresh"] == "3"
    assert operation(again, "prices").details["productsProcessed"] == "0"
    assert client.api.stats.requests == requests  # nothing fetched
    full = await run_prices(sync, full=True)
    assert operation(full, "prices").details["productsProcessed"] == "3"
    # a product stale in one region is refreshed
    await store.pool.execute(
        "UPDATE master_market_latest SET snapshot_time = now() - interval '9 hours' "
        "WHERE product_id = $1 AND currency_code = 'EUR'", ids[0])
    partial = await run_prices(sync)
    assert operation(partial, "prices").details["productsProcessed"] == "1"
    assert operation(partial, f"product {ids[0]}").ok


async def test_failing_region_does_not_fail_the_other_regions(
        store: PricingStore, sandbox: StockXSandbox, make_client: MakeClient) -> None:
    ids = [product.product_id for product in sandbox.products[:2]]
    await store.set_portfolio("a@example.com", [(pid, "", 1) for pid in ids])
    sandbox.failing_currencies = {"GBP"}
    job = await run_prices(PriceSync(store, make_client(sandbox), settings_for()))
    assert job.status == "PARTIAL"
    product_op = operation(job, f"product {ids[0]}")
    assert not product_op.ok and "GBP" in product_op.error
    assert product_op.details["GBP"].startswith("failed")
    assert product_op.details["USD"].endswith("snapshots")
    assert product_op.details["result"] == "partial"
    currencies = await store.pool.fetch(
        "SELECT DISTINCT currency_code FROM master_market_latest ORDER BY 1")
    assert [r["currency_code"] for r in currencies] == ["EUR", "USD"]
    figures = operation(job, "prices").details
    assert (figures["successCount"], figures["partialCount"]) == ("0", "2")


async def test_time_budget_stops_the_run_and_unreached_lead_the_next(
        store: PricingStore, sandbox: StockXSandbox, make_client: MakeClient) -> None:
    ids = [product.product_id for product in sandbox.products[:12]]
    await store.set_portfolio("a@example.com", [(pid, "", 1) for pid in ids])
    sandbox.faults.configure(sandbox.faults.plan.__class__(latency_ms=60, path_prefix="/v2/"))
    settings = settings_for(PRICING_TIME_BUDGET_SECONDS="0.5", PRICING_CONCURRENCY="2")
    sync = PriceSync(store, make_client(sandbox), settings)
    job = await run_prices(sync)
    figures = operation(job, "prices").details
    processed, unreached = int(figures["productsProcessed"]), int(figures["notReached"])
    assert processed >= 1 and unreached >= 1 and processed + unreached == 12
    not_reached = figures["notReachedProducts"].split(",")
    assert set(not_reached) <= set(ids)
    assert await store.backlog() == not_reached  # in flight first, then never started
    # next run: the unreached come first
    sandbox.faults.clear()
    selection = await sync.select(full=False)
    assert selection.chosen[: len(not_reached)] == await store.backlog()
    assert set(selection.chosen[: len(not_reached)]) == set(not_reached)
    follow_up = await run_prices(PriceSync(store, sync.client, settings_for()))
    assert operation(follow_up, "prices").details["notReached"] == "0"
    assert await store.backlog() == []


def test_rows_for_another_product_or_currency_are_split_off() -> None:
    def row(product_id: str, currency: str) -> MarketData:
        return MarketData(product_id, "v1", currency, Decimal(100), None)

    ours, no_product = row("p1", "GBP"), row("", "GBP")  # a row without productId is ours
    kept, why = split_answer([ours, row("p2", "GBP"), no_product, row("p1", "USD")], "p1", "GBP")
    assert kept == [ours, no_product]
    assert why == "2 of 4 rows answered p1 in USD, p2 in GBP, not p1 in GBP: left out"
    assert split_answer([ours], "p1", "GBP") == ([ours], "")


async def test_prices_answered_in_another_currency_are_left_out(
        store: PricingStore, sandbox: StockXSandbox, make_client: MakeClient) -> None:
    product = sandbox.products[0]
    pid, sizes = product.product_id, len(product.variants)
    await store.set_portfolio("a@example.com", [(pid, "", 1)])
    sandbox.usd_currencies = {"GBP"}  # asked for GBP, StockX answers in USD
    job = await run_prices(PriceSync(store, make_client(sandbox), settings_for()))
    assert job.status == "PARTIAL"
    details = operation(job, f"product {pid}").details
    assert details["GBP"] == (f"0 snapshots; failed: {sizes} of {sizes} rows answered {pid} in "
                              f"USD, not {pid} in GBP: left out")
    assert details["result"] == "partial"
    stored = await store.pool.fetch(
        "SELECT currency_code, count(*) FROM master_market_latest GROUP BY 1 ORDER BY 1")
    assert [tuple(record) for record in stored] == [("EUR", sizes), ("USD", sizes)]
    assert job.counts.as_dict() == _counts(seen=2 * sizes, created=2 * sizes, failed=1)


def _row(product_id: str, ask: str, at_hours_ago: float) -> SnapshotRow:
    return SnapshotRow(product_id, "v1", "USD", Decimal(ask), None, None, None, None, None,
                       utcnow() - timedelta(hours=at_hours_ago))


async def test_latest_never_goes_backwards_in_time(store: PricingStore) -> None:
    newer = await store.write_snapshots([_row("p1", "200", 1)])
    assert (newer.created, newer.updated) == (1, 0)
    older = await store.write_snapshots([_row("p1", "150", 5)])  # a late, older snapshot
    assert (older.snapshots, older.created, older.updated, older.stale) == (1, 0, 0, 1)
    latest = await store.latest_prices("p1", ["USD"])
    assert latest[0].lowest_ask == "200"
    assert await store.snapshot_count() == 2  # the audit trail keeps both
    newest = await store.write_snapshots([_row("p1", "210", 0)])
    assert newest.updated == 1
    assert (await store.latest_prices("p1", ["USD"]))[0].lowest_ask == "210"
    # within one batch the newest of the same key wins
    batch = await store.write_snapshots([_row("p2", "1", 0.5), _row("p2", "2", 0.1),
                                         _row("p2", "3", 0.9)])
    assert batch.snapshots == 3 and batch.created == 1
    assert (await store.latest_prices("p2", ["USD"]))[0].lowest_ask == "2"


async def test_retention_prunes_old_snapshots_only(
        store: PricingStore, sandbox: StockXSandbox, make_client: MakeClient) -> None:
    await store.write_snapshots([_row("old", "1", 24 * 100), _row("young", "1", 24 * 10)])
    sync = PriceSync(store, make_client(sandbox), settings_for(PRICING_RETENTION_DAYS="90"))
    job = SyncJob("retention")
    await sync.prune(job)
    assert job.operations[0].counts.deleted == 1
    assert await store.snapshot_count() == 1
    assert await store.latest_prices("old", ["USD"])  # latest rows stay
