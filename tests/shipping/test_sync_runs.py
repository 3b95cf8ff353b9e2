"""How sync runs end: an integration whose client cannot be built fails alone, a credential
change does not break a run still using the old client, a run cancelled by the service
stopping leaves its sync_logs row."""

from __future__ import annotations

import asyncio

from syncsuite.shipping.v1 import shipping_service_pb2 as pb
from syncsuite.sync.v1 import sync_pb2

from services.shipping.sandbox import ShipStationSandbox, credentials_of
from shared.sandbox import FaultPlan
from tests.shipping.conftest import ADMIN, StartShipping, small_config
from tests.shipping.test_sync import COMPLETED, PARTIAL, ops


async def test_an_integration_without_a_usable_client_fails_alone(
    start_shipping: StartShipping,
) -> None:
    async with start_shipping() as shipping:
        await shipping.add_account(1)
        await shipping.add_account(2)
        # stored before UpsertIntegration checked credentials: no HTTP header can carry it
        broken_key = "sandbox-v2-k\u00e9y-2"
        await shipping.fetchval(
            "UPDATE shipping.integrations SET v2_api_key = $1 WHERE name = 'store-2'",
            broken_key)
        report = await shipping.sync("all")
        requests_at_return = len(shipping.sandbox.journal)
        assert report.status == PARTIAL
        results = ops(report)
        healthy = [op for name, op in results.items() if name.startswith("store-1/")]
        broken = [op for name, op in results.items() if name.startswith("store-2/")]
        assert len(healthy) == 5 and all(op.ok for op in healthy)
        assert len(broken) == 5 and not any(op.ok for op in broken)
        assert "UpsertIntegration" in broken[0].error and "\u00e9" not in broken[0].error
        assert await shipping.fetchval("SELECT count(*) FROM shipping.inventory") == 240
        logs = (await shipping.api.ListSyncLogs(pb.ListSyncLogsRequest(), metadata=ADMIN,
                                                timeout=10)).logs
        assert [(log.total_operations, log.failed_operations) for log in logs] == [(10, 5)]
        assert {r.name.split("/")[0] for r in logs[0].results} == {"store-1", "store-2"}
        await asyncio.sleep(0.2)
        assert len(shipping.sandbox.journal) == requests_at_return  # nothing ran on


async def test_a_credential_change_does_not_close_a_client_still_in_use(
    start_shipping: StartShipping,
) -> None:
    sandbox = ShipStationSandbox(small_config())
    sandbox.v1_faults.configure(FaultPlan(latency_ms=300, path_prefix="/products"))
    first_page = asyncio.Event()
    sandbox.before_request("/products", 2, first_page.set)
    async with start_shipping(sandbox) as shipping:
        await shipping.add_account(1, name="main")
        products = asyncio.create_task(shipping.sync("products"))
        await asyncio.wait_for(first_page.wait(), timeout=10)
        # new credentials while products is still paging with the old client; the warehouses
        # scope (another lock) runs at once and builds the new client
        key, secret, v2 = credentials_of(2)
        await shipping.api.UpsertIntegration(pb.UpsertIntegrationRequest(
            name="main", api_key=key, api_secret=secret, v2_api_key=v2), metadata=ADMIN,
            timeout=10)
        assert (await shipping.sync("warehouses")).status == COMPLETED
        assert not products.done()
        report = await asyncio.wait_for(products, timeout=30)
        assert report.status == COMPLETED, report.error
        assert ops(report)["main/products"].records == 120


async def test_a_run_cancelled_by_the_service_stopping_leaves_a_sync_log(
    start_shipping: StartShipping,
) -> None:
    sandbox = ShipStationSandbox(small_config())
    sandbox.v1_faults.configure(FaultPlan(latency_ms=5000, path_prefix="/products"))
    reading = asyncio.Event()
    sandbox.before_request("/products", 1, reading.set)
    async with start_shipping(sandbox) as shipping:
        await shipping.add_account(1)
        await shipping.sync_api.Sync(sync_pb2.SyncRequest(scope="products", background=True),
                                     metadata=ADMIN, timeout=10)
        await asyncio.wait_for(reading.wait(), timeout=10)
    # the service has stopped (cancelling the run); its database is still there
    assert await shipping.fetchval("SELECT count(*) FROM shipping.sync_logs") == 1
    message = await shipping.fetchval("SELECT message FROM shipping.sync_logs")
    assert message == "interrupted: the service is shutting down; 0 of 1 operations succeeded"
    assert await shipping.fetchval("SELECT failed_operations FROM shipping.sync_logs") == 1
