"""The phased ShipStation sync through SyncService, against the sandbox and real PostgreSQL."""

from __future__ import annotations

import asyncio

from syncsuite.shipping.v1 import shipping_service_pb2 as pb
from syncsuite.sync.v1 import sync_pb2

from services.shipping.sandbox import AccountSpec, ShipStationSandbox
from shared.sandbox import FaultPlan, ManualClock
from tests.shipping.conftest import ADMIN, StartShipping, small_config

COMPLETED = sync_pb2.SYNC_STATUS_COMPLETED
PARTIAL = sync_pb2.SYNC_STATUS_PARTIAL


def ops(report: sync_pb2.SyncReport) -> dict[str, sync_pb2.OperationResult]:
    return {op.name: op for op in report.operations}


async def test_full_sync_stores_everything_with_fewest_requests(
    start_shipping: StartShipping,
) -> None:
    async with start_shipping() as shipping:
        await shipping.add_account(1)
        report = await shipping.sync("all")
        assert report.status == COMPLETED, report.error
        results = ops(report)
        assert results["store-1/products"].counts.created == 120
        assert results["store-1/products"].details["requests"] == "3"  # 120 / 50
        assert results["store-1/inventory"].counts.created == 240
        assert results["store-1/inventory"].details["requests"] == "5"  # 240 / 50
        assert results["store-1/warehouses"].records == 3
        assert results["store-1/inventory_locations"].records == 6
        # round trips follow pages: one upsert per page plus one "gone upstream" statement
        assert results["store-1/products"].details["db_round_trips"] == "4"
        assert results["store-1/inventory"].details["db_round_trips"] == "6"
        assert await shipping.fetchval("SELECT count(*) FROM shipping.products") == 120
        assert await shipping.fetchval("SELECT count(*) FROM shipping.sync_logs") == 1


async def test_phase_one_runs_in_order_and_phase_two_concurrently(
    start_shipping: StartShipping,
) -> None:
    sandbox = ShipStationSandbox(small_config())
    # every request takes a while, so overlapping requests show in the sandbox's journal
    sandbox.v1_faults.configure(FaultPlan(latency_ms=15))
    sandbox.v2_faults.configure(FaultPlan(latency_ms=15))
    async with start_shipping(sandbox) as shipping:
        await shipping.add_account(1)
        report = await shipping.sync("all")
    assert report.status == COMPLETED, report.error
    journal = sandbox.journal

    def spans(path: str) -> list[tuple[float, float]]:
        return [(e.started, e.finished) for e in journal if e.path == path]

    warehouses, inventory_warehouses, locations = (
        spans("/warehouses"), spans("/v2/inventory_warehouses"), spans("/v2/inventory_locations"))
    products, inventory = spans("/products"), spans("/v2/inventory")
    assert len(products) == 3 and len(inventory) == 5
    # phase 1: each step ends before the next begins, and before phase 2 starts
    assert max(e for _, e in warehouses) <= min(s for s, _ in inventory_warehouses)
    assert max(e for _, e in inventory_warehouses) <= min(s for s, _ in locations)
    phase2_start = min(s for s, _ in products + inventory)
    assert max(e for _, e in locations) <= phase2_start
    # phase 2: products and inventory requests overlap in time
    assert min(s for s, _ in inventory) < max(e for _, e in products)
    assert min(s for s, _ in products) < max(e for _, e in inventory)
    assert any(ps < ie and is_ < pe for ps, pe in products for is_, ie in inventory)


async def test_a_failing_operation_leaves_the_others_done_and_logged(
    start_shipping: StartShipping,
) -> None:
    sandbox = ShipStationSandbox(small_config())
    clock = ManualClock()
    sandbox.v1_faults.force("status", status=500, count=10, path_prefix="/warehouses")
    async with start_shipping(sandbox, clock=clock, sleep=clock.sleep) as shipping:
        await shipping.add_account(1)
        report = await shipping.sync("all")
        assert report.status == PARTIAL
        results = ops(report)
        assert not results["store-1/warehouses"].ok
        assert "500" in results["store-1/warehouses"].error
        others = [name for name in results if name != "store-1/warehouses"]
        assert len(others) == 4 and all(results[name].ok for name in others)
        assert await shipping.fetchval("SELECT count(*) FROM shipping.inventory") == 240
        logs = (await shipping.api.ListSyncLogs(pb.ListSyncLogsRequest(failed_only=True),
                                                metadata=ADMIN, timeout=10)).logs
        assert len(logs) == 1
        log = logs[0]
        assert (log.total_operations, log.successful_operations, log.failed_operations) == (
            5, 4, 1)
        assert {r.name: r.ok for r in log.results}["store-1/warehouses"] is False
        assert log.job_id == report.job_id


async def test_rate_limit_headers_are_respected_against_a_strict_sandbox(
    start_shipping: StartShipping,
) -> None:
    clock = ManualClock()
    # v1: 4 requests per 10 s window; v2: 1 per second, burst 2. One account, 1 + 3 v1 pages
    # and 2 + 5 v2 pages: pacing must wait for windows, never run into a 429.
    config = small_config(v1_limit=4, v1_window=10.0, v2_rate_per_minute=60.0, v2_burst=2.0)
    sandbox = ShipStationSandbox(config, clock=clock, sleep=clock.sleep)
    env = {"SHIPSTATION_V1_RATE_LIMIT": "4", "SHIPSTATION_V1_RATE_WINDOW": "10",
           "SHIPSTATION_V1_RATE_MARGIN": "0.5", "SHIPSTATION_V2_RATE_PER_MINUTE": "60",
           "SHIPSTATION_V2_BURST": "2", "SHIPSTATION_PAGE_SIZE": "40"}
    async with start_shipping(sandbox, clock=clock, sleep=clock.sleep, env=env) as shipping:
        await shipping.add_account(1)
        started = clock()
        report = await shipping.sync("all", full=True)
        assert report.status == COMPLETED, report.error
        assert sandbox.v1_limit.rejected == 0 and sandbox.v2_limit.rejected == 0
        assert sandbox.v1_limit.admitted == 4 and sandbox.v2_limit.admitted == 7
        # 4 v1 requests fit one window; the 7 v2 requests needed ≥ 5 s of pacing
        assert clock() - started >= 5.0
        # a second run right away: the first window is spent, so v1 waits for the reset
        second = await shipping.sync("all", full=True)
        assert second.status == COMPLETED, second.error
        assert sandbox.v1_limit.rejected == 0 and sandbox.v2_limit.rejected == 0
        assert clock() - started >= 10.0


async def test_dry_run_writes_nothing_and_says_what_would_change(
    start_shipping: StartShipping,
) -> None:
    async with start_shipping() as shipping:
        await shipping.add_account(1)
        first_dry = await shipping.sync("all", dry_run=True)
        assert first_dry.status == COMPLETED and first_dry.dry_run
        assert ops(first_dry)["store-1/products"].counts.created == 120
        assert await shipping.fetchval("SELECT count(*) FROM shipping.products") == 0
        await shipping.sync("all")
        shipping.sandbox.mutate()
        before = await shipping.snapshot()
        dry = await shipping.sync("all", full=True, dry_run=True)
        assert await shipping.snapshot() == before
        products = ops(dry)["store-1/products"]
        assert products.counts.updated > 0 and products.counts.deleted > 0
        assert products.counts.created > 0
        assert products.details["would_updated_sample"]
        assert "would create" in dry.message and "nothing written" in dry.message
        # and the real run does what the dry run announced
        real = ops(await shipping.sync("all", full=True))["store-1/products"]
        assert (real.counts.created, real.counts.updated, real.counts.deleted) == (
            products.counts.created, products.counts.updated, products.counts.deleted)


async def test_two_stores_are_synced_with_isolated_data(start_shipping: StartShipping) -> None:
    async with start_shipping() as shipping:
        one = await shipping.add_account(1)
        two = await shipping.add_account(2)
        report = await shipping.sync("all")
        assert report.status == COMPLETED, report.error
        assert len(report.operations) == 10
        for integration, count in ((one, 120), (two, 70)):
            listed = await shipping.api.ListProducts(pb.ListProductsRequest(
                integration_id=integration.integration_id, page_size=1000), timeout=10)
            assert len(listed.products) == count
        skus_one = {p.sku for p in (await shipping.api.ListProducts(pb.ListProductsRequest(
            integration_id=one.integration_id, page_size=1000), timeout=10)).products}
        assert all("1-" in sku for sku in skus_one)
        # a sku of store 1 is unknown in store 2
        sku = sorted(skus_one)[0]
        other = await shipping.api.ListInventory(pb.ListInventoryRequest(
            integration_id=two.integration_id, sku=sku), timeout=10)
        assert list(other.levels) == []
        # deactivating store 2 keeps its data but stops syncing it
        await shipping.api.DeactivateIntegration(pb.DeactivateIntegrationRequest(
            integration_id=two.integration_id), metadata=ADMIN, timeout=10)
        again = await shipping.sync("all")
        assert {op.name.split("/")[0] for op in again.operations} == {"store-1"}


async def test_incremental_products_and_records_gone_upstream(
    start_shipping: StartShipping,
) -> None:
    async with start_shipping() as shipping:
        integration = await shipping.add_account(1)
        await shipping.sync("all")
        changes = shipping.sandbox.mutate()[1]
        incremental = ops(await shipping.sync("products"))["store-1/products"]
        assert incremental.details["mode"].startswith("modified since")
        # only changed products are read: one page instead of three
        assert incremental.details["requests"] == "1"
        assert incremental.counts.updated == changes["edited"]
        assert incremental.counts.created == changes["added"]
        assert incremental.counts.deleted == 0  # deletions need a complete read
        full = ops(await shipping.sync("products", full=True))["store-1/products"]
        assert full.details["mode"] == "full"
        assert full.counts.deleted == changes["deleted"]
        deleted = await shipping.api.ListProducts(pb.ListProductsRequest(
            integration_id=integration.integration_id, include_deleted=True, page_size=1000),
            timeout=10)
        assert sum(p.deleted for p in deleted.products) == changes["deleted"]
        inventory = ops(await shipping.sync("inventory"))["store-1/inventory"]
        # moved stock (a moved row of a new product counts as created)
        assert 0 < inventory.counts.updated <= changes["stock_moved"]
        assert inventory.counts.created > 0  # the new products' stock rows
        assert inventory.counts.deleted > 0  # the deleted products' stock rows


async def test_no_active_integrations_is_informational(start_shipping: StartShipping) -> None:
    async with start_shipping() as shipping:
        report = await shipping.sync("all")
        assert report.status == COMPLETED
        assert report.message == "no active integrations"
        assert list(report.operations) == []
        logs = (await shipping.api.ListSyncLogs(pb.ListSyncLogsRequest(), metadata=ADMIN,
                                                timeout=10)).logs
        assert logs[0].message == "no active integrations" and logs[0].total_operations == 0


async def test_a_second_sync_of_a_running_scope_is_aborted(
    start_shipping: StartShipping,
) -> None:
    sandbox = ShipStationSandbox(small_config(accounts=(AccountSpec(1, products=50),)))
    sandbox.v1_faults.configure(FaultPlan(latency_ms=300, path_prefix="/warehouses"))
    async with start_shipping(sandbox) as shipping:
        await shipping.add_account(1)
        first = asyncio.create_task(shipping.sync("all"))
        await asyncio.sleep(0.1)
        try:
            await shipping.sync("products")
            raise AssertionError("expected ABORTED")
        except Exception as error:  # grpc.aio.AioRpcError
            assert "ABORTED" in str(getattr(error, "code", lambda: "")())
        assert (await first).status == COMPLETED
