"""ListInventory's per-replica read cache: two replicas of the service over one database,
each fed by the inventory trigger's notifications, see every committed sync (the syncing one as
soon as Sync returns, the other once the notification has arrived); a sync that changes nothing
keeps their caches warm."""

from __future__ import annotations

import grpc
import pytest
from syncsuite.shipping.v1 import shipping_service_pb2 as pb
from syncsuite.sync.v1 import sync_pb2

from services.shipping.sandbox import ShipStationSandbox
from tests.shipping.conftest import Shipping, StartShipping, small_config


def _cache_events(shipping: Shipping, result: str) -> float:
    value = shipping.service.runtime.metrics.registry.get_sample_value(
        "syncsuite_cache_events_total", {"cache": "shipping_inventory", "result": result})
    return value or 0.0


async def _levels(shipping: Shipping, integration_id: str, sku: str
                  ) -> dict[tuple[str, str], int]:
    reply = await shipping.api.ListInventory(pb.ListInventoryRequest(
        integration_id=integration_id, sku=sku), timeout=10)
    assert reply.total_on_hand == sum(level.on_hand for level in reply.levels)
    return {(level.warehouse_id, level.location_id): level.on_hand for level in reply.levels}


async def test_replicas_see_a_committed_sync_on_their_next_read(
        start_shipping: StartShipping) -> None:
    sandbox = ShipStationSandbox(small_config())
    async with start_shipping(sandbox) as first, start_shipping(sandbox) as second:
        integration = await first.add_account(1)
        iid = integration.integration_id
        report = await first.sync("all")
        assert report.status == sync_pb2.SYNC_STATUS_COMPLETED, report.error
        account = sandbox.account(1)
        (sku, location), row = next(iter(sorted(account.stock.items())))
        replicas = (first, second)
        before = [await _levels(replica, iid, sku) for replica in replicas]
        assert before[0] == before[1] and before[0]
        for replica, seen in zip(replicas, before, strict=True):  # again: from the cache
            assert await _levels(replica, iid, sku) == seen
            assert _cache_events(replica, "hit") == 1

        # nothing changed upstream: the sync writes nothing, the caches stay valid
        assert (await first.sync("inventory")).status == sync_pb2.SYNC_STATUS_COMPLETED
        for replica, seen in zip(replicas, before, strict=True):
            assert await _levels(replica, iid, sku) == seen
            assert _cache_events(replica, "hit") == 2

        # upstream stock moves; a sync through one replica is seen by both at once
        row["on_hand"] += 11
        row["available"] = row["on_hand"] - row["allocated"]
        account._sorted.clear()
        assert (await first.sync("inventory")).status == sync_pb2.SYNC_STATUS_COMPLETED
        assert await second.service.runtime.feeds[0].caught_up()  # first's is, before Sync ends
        for replica, seen in zip(replicas, before, strict=True):
            levels = await _levels(replica, iid, sku)
            changed = [key for key in levels if levels[key] != seen[key]]
            assert len(changed) == 1 and levels[changed[0]] == seen[changed[0]] + 11
            assert _cache_events(replica, "miss") == 2

        # a stock row gone upstream is marked deleted, and leaves both replicas' answers
        del account.stock[(sku, location)]
        account._sorted.clear()
        assert (await first.sync("inventory")).status == sync_pb2.SYNC_STATUS_COMPLETED
        assert await second.service.runtime.feeds[0].caught_up()
        for replica, seen in zip(replicas, before, strict=True):
            levels = await _levels(replica, iid, sku)
            assert len(levels) == len(seen) - 1
            assert all(key[1] != location for key in levels)


async def test_unknown_integration_is_not_found_and_not_cached(
        start_shipping: StartShipping) -> None:
    async with start_shipping() as shipping:
        integration = await shipping.add_account(1)
        missing = pb.ListInventoryRequest(integration_id="00000000-0000-4000-8000-000000000000")
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await shipping.api.ListInventory(missing, timeout=10)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        # an integration never synced: an empty answer, then the synced rows
        empty = await shipping.api.ListInventory(pb.ListInventoryRequest(
            integration_id=integration.integration_id), timeout=10)
        assert list(empty.levels) == []
        await shipping.sync("all")
        synced = await shipping.api.ListInventory(pb.ListInventoryRequest(
            integration_id=integration.integration_id), timeout=10)
        assert synced.levels
        assert _cache_events(shipping, "hit") == 0
