"""ShippingService RPCs: integrations (credentials masked, never logged), queries, validation,
sync logs and pruning."""

from __future__ import annotations

import json

import asyncpg
import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from structlog.testing import capture_logs
from syncsuite.shipping.v1 import shipping_service_pb2 as pb
from syncsuite.sync.v1 import sync_pb2

from services.shipping.sandbox import credentials_of
from services.shipping.server import build_service
from shared.config import ConfigError
from shared.paging import encode_page_token
from shared.sandbox import ManualClock
from shared.sealing import SEALED_PREFIX
from shared.server import running_service
from tests.shipping.conftest import ADMIN, Shipping, StartShipping


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def test_credentials_are_never_returned_nor_logged(start_shipping: StartShipping) -> None:
    key, secret, v2 = credentials_of(1)
    clock = ManualClock()
    with capture_logs() as logs:
        async with start_shipping(clock=clock, sleep=clock.sleep) as shipping:
            # a failing request too, so that error paths are logged
            shipping.sandbox.v2_faults.force("status", status=503, count=2,
                                             path_prefix="/v2/inventory_locations")
            created = await shipping.api.UpsertIntegration(pb.UpsertIntegrationRequest(
                name="main", api_key=key, api_secret=secret, v2_api_key=v2),
                metadata=ADMIN, timeout=10)
            assert created.created
            listed = await shipping.api.ListIntegrations(pb.ListIntegrationsRequest(),
                                                         metadata=ADMIN, timeout=10)
            report = await shipping.sync("all")
            updated = await shipping.api.UpsertIntegration(pb.UpsertIntegrationRequest(
                name="main", store_id=5), metadata=ADMIN, timeout=10)  # keeps credentials
            logs_reply = await shipping.api.ListSyncLogs(pb.ListSyncLogsRequest(),
                                                         metadata=ADMIN, timeout=10)
    responses = [created, listed, report, updated, logs_reply]
    text = " ".join(str(message) for message in responses) + json.dumps(logs, default=str)
    for credential in (key, secret, v2):
        assert credential not in text
    assert created.integration.api_key_hint == "****" + key[-4:]
    assert created.integration.has_api_secret and created.integration.has_v2_api_key
    assert not updated.created and updated.integration.store_id == 5
    assert any(entry.get("event") == "upstream_retry" for entry in logs)
    assert report.status != 0


async def test_credentials_are_stored_sealed_and_ones_in_clear_are_sealed_at_start(
    start_shipping: StartShipping,
) -> None:
    key, secret, v2 = credentials_of(1)
    async with start_shipping() as shipping:
        await shipping.add_account(1, name="main")
        await shipping.api.UpsertIntegration(pb.UpsertIntegrationRequest(
            name="main", store_id=7), metadata=ADMIN, timeout=10)  # keeps the credentials
        stored = await shipping.fetchval(
            "SELECT api_key || ' ' || api_secret || ' ' || v2_api_key FROM shipping.integrations")
        report = await shipping.sync("all")
        connection = await asyncpg.connect(shipping.database_url)
        try:  # as a version before sealing left them
            await connection.execute(
                "UPDATE shipping.integrations SET api_key = $1, api_secret = $2,"
                " v2_api_key = $3", key, secret, v2)
        finally:
            await connection.close()
    assert isinstance(stored, str) and stored.count(SEALED_PREFIX) == 3
    for credential in (key, secret, v2):
        assert credential not in stored
    assert report.status == sync_pb2.SYNC_STATUS_COMPLETED  # ShipStation took them opened

    async with start_shipping() as shipping:  # the next start seals what is in clear
        stored = await shipping.fetchval("SELECT api_secret FROM shipping.integrations")
        assert isinstance(stored, str) and stored.startswith(SEALED_PREFIX)
        assert (await shipping.sync("all")).status == sync_pb2.SYNC_STATUS_COMPLETED


@pytest.mark.parametrize(("key", "says"), [("", "is not set"), ("c2hvcnQ=", "32 random bytes")])
async def test_shipping_does_not_start_without_a_key_to_seal_credentials(
    shipping_env: dict[str, str], key: str, says: str,
) -> None:
    environ = {**shipping_env, "SYNCSUITE_DATA_KEY": key}
    if not key:
        del environ["SYNCSUITE_DATA_KEY"]
    with pytest.raises(ConfigError, match=says):
        async with running_service(build_service(), environ):
            pass


async def _seed(shipping: Shipping) -> pb.Integration:
    integration = await shipping.add_account(1)
    await shipping.sync("all")
    return integration


async def test_queries(start_shipping: StartShipping) -> None:
    async with start_shipping() as shipping:
        integration = await _seed(shipping)
        iid = integration.integration_id
        warehouses = await shipping.api.ListWarehouses(pb.ListWarehousesRequest(
            integration_id=iid), timeout=10)
        kinds = [w.kind for w in warehouses.warehouses]
        assert kinds.count(pb.WAREHOUSE_KIND_SHIP_FROM) == 3
        assert kinds.count(pb.WAREHOUSE_KIND_INVENTORY) == 3
        inventory_warehouse = next(w for w in warehouses.warehouses
                                   if w.kind == pb.WAREHOUSE_KIND_INVENTORY)
        assert len(inventory_warehouse.locations) == 2
        # paging walks every warehouse once
        seen, token = [], ""
        while True:
            page = await shipping.api.ListWarehouses(pb.ListWarehousesRequest(
                integration_id=iid, page_size=4, page_token=token), timeout=10)
            seen += [w.warehouse_id for w in page.warehouses]
            token = page.next_page_token
            if not token:
                break
        assert len(seen) == len(set(seen)) == 6

        products = await shipping.api.ListProducts(pb.ListProductsRequest(
            integration_id=iid, page_size=50), timeout=10)
        assert len(products.products) == 50 and products.next_page_token
        sample = products.products[7]
        by_sku = await shipping.api.ListProducts(pb.ListProductsRequest(
            integration_id=iid, sku=sample.sku), timeout=10)
        assert [p.product_id for p in by_sku.products] == [sample.product_id]
        prefix = sample.name.split()[0].lower()
        by_name = await shipping.api.ListProducts(pb.ListProductsRequest(
            integration_id=iid, name_prefix=prefix, page_size=1000), timeout=10)
        assert by_name.products and all(p.name.lower().startswith(prefix)
                                        for p in by_name.products)
        assert (await shipping.api.ListProducts(pb.ListProductsRequest(
            integration_id=iid, name_prefix="%"), timeout=10)).products == []

        levels = await shipping.api.ListInventory(pb.ListInventoryRequest(
            integration_id=iid, sku=sample.sku), timeout=10)
        assert len(levels.levels) == 2
        for level in levels.levels:
            assert level.available == level.on_hand - level.allocated
            assert level.warehouse_name and level.location_name
        assert levels.total_on_hand == sum(level.on_hand for level in levels.levels)
        location = levels.levels[0].location_id
        at_location = await shipping.api.ListInventory(pb.ListInventoryRequest(
            integration_id=iid, location_id=location, page_size=1000), timeout=10)
        assert at_location.levels and all(lv.location_id == location
                                          for lv in at_location.levels)
        warehouse = levels.levels[0].warehouse_id
        in_warehouse = await shipping.api.ListInventory(pb.ListInventoryRequest(
            integration_id=iid, warehouse_id=warehouse, page_size=1000), timeout=10)
        assert len(in_warehouse.levels) >= len(at_location.levels)


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("ListInventory", pb.ListInventoryRequest(), "integration_id"),
        ("ListInventory", pb.ListInventoryRequest(integration_id="nope"), "integration_id"),
        ("ListInventory", pb.ListInventoryRequest(
            integration_id="00000000-0000-0000-0000-000000000001", page_size=-1), "page_size"),
        ("ListProducts", pb.ListProductsRequest(
            integration_id="00000000-0000-0000-0000-000000000001", sku="x" * 300), "sku"),
        ("ListProducts", pb.ListProductsRequest(
            integration_id="00000000-0000-0000-0000-000000000001", page_token="garbage"),
         "page_token"),
        ("ListWarehouses", pb.ListWarehousesRequest(
            integration_id="00000000-0000-0000-0000-000000000001", kind=99), "kind"),
        ("UpsertIntegration", pb.UpsertIntegrationRequest(name="bad name"), "name"),
        ("UpsertIntegration", pb.UpsertIntegrationRequest(name="new", api_key="k"),
         "api_secret"),
        ("UpsertIntegration", pb.UpsertIntegrationRequest(
            name="new", api_key="k k", api_secret="s", v2_api_key="v"), "api_key"),
        ("UpsertIntegration", pb.UpsertIntegrationRequest(name="n", store_id=-1), "store_id"),
        ("DeactivateIntegration", pb.DeactivateIntegrationRequest(), "integration_id"),
        ("PruneSyncLogs", pb.PruneSyncLogsRequest(older_than=Duration(seconds=-5)),
         "older_than"),
        # the largest Duration: a cutoff before year 1
        ("PruneSyncLogs", pb.PruneSyncLogsRequest(older_than=Duration(seconds=315576000000)),
         "older_than"),
        # credentials go into HTTP headers (ASCII only); ':' ends a Basic auth key
        ("UpsertIntegration", pb.UpsertIntegrationRequest(
            name="new", api_key="k", api_secret="s", v2_api_key="v2-k\u00e9y"), "v2_api_key"),
        ("UpsertIntegration", pb.UpsertIntegrationRequest(
            name="new", api_key="k", api_secret="s\x00", v2_api_key="v"), "api_secret"),
        ("UpsertIntegration", pb.UpsertIntegrationRequest(
            name="new", api_key="key:part", api_secret="s", v2_api_key="v"), "api_key"),
        # PostgreSQL text cannot hold NUL
        ("ListProducts", pb.ListProductsRequest(
            integration_id="00000000-0000-0000-0000-000000000001", name_prefix="a\x00"),
         "name_prefix"),
        ("ListProducts", pb.ListProductsRequest(
            integration_id="00000000-0000-0000-0000-000000000001", sku="\x00"), "sku"),
        ("ListInventory", pb.ListInventoryRequest(
            integration_id="00000000-0000-0000-0000-000000000001", sku="a\x00b"), "sku"),
        ("ListInventory", pb.ListInventoryRequest(
            integration_id="00000000-0000-0000-0000-000000000001", location_id="\x00"),
         "location_id"),
        ("ListInventory", pb.ListInventoryRequest(
            integration_id="00000000-0000-0000-0000-000000000001",
            page_token=encode_page_token({"sku": "\x00", "w": "", "l": ""})), "page_token"),
    ],
)
async def test_bad_input_names_the_field(
    start_shipping: StartShipping, method: str, request_: object, field: str
) -> None:
    async with start_shipping() as shipping:
        code, details = await _code(getattr(shipping.api, method)(
            request_, metadata=ADMIN, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(f"{field}:")


async def test_unknown_integration_is_not_found_and_admin_rpcs_need_the_token(
    start_shipping: StartShipping,
) -> None:
    async with start_shipping() as shipping:
        missing = "00000000-0000-0000-0000-000000000001"
        code, _ = await _code(shipping.api.ListInventory(pb.ListInventoryRequest(
            integration_id=missing), timeout=10))
        assert code == grpc.StatusCode.NOT_FOUND
        code, _ = await _code(shipping.api.DeactivateIntegration(
            pb.DeactivateIntegrationRequest(integration_id=missing), metadata=ADMIN, timeout=10))
        assert code == grpc.StatusCode.NOT_FOUND
        code, _ = await _code(shipping.api.ListIntegrations(pb.ListIntegrationsRequest(),
                                                            timeout=10))
        assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_sync_logs_are_paged_filtered_and_pruned(start_shipping: StartShipping) -> None:
    clock = ManualClock()
    async with start_shipping(clock=clock, sleep=clock.sleep) as shipping:
        await shipping.add_account(1)
        for _ in range(3):
            await shipping.sync("warehouses")
        shipping.sandbox.v1_faults.force("status", status=500, count=10,
                                         path_prefix="/warehouses")
        failing = await shipping.sync("warehouses")
        assert not failing.operations[0].ok
        first = await shipping.api.ListSyncLogs(pb.ListSyncLogsRequest(page_size=3),
                                                metadata=ADMIN, timeout=10)
        assert len(first.logs) == 3 and first.next_page_token
        assert first.logs[0].job_id == failing.job_id  # newest first
        rest = await shipping.api.ListSyncLogs(pb.ListSyncLogsRequest(
            page_size=3, page_token=first.next_page_token), metadata=ADMIN, timeout=10)
        assert len(rest.logs) == 1 and not rest.next_page_token
        failed = await shipping.api.ListSyncLogs(pb.ListSyncLogsRequest(failed_only=True),
                                                 metadata=ADMIN, timeout=10)
        assert [log.job_id for log in failed.logs] == [failing.job_id]

        # age two logs: 40 and 31 days old; the default (30 days) prunes both, not the others
        await shipping.fetchval(
            "UPDATE shipping.sync_logs SET \"timestamp\" = now() - interval '40 days'"
            " WHERE id = (SELECT min(id) FROM shipping.sync_logs)")
        await shipping.fetchval(
            "UPDATE shipping.sync_logs SET \"timestamp\" = now() - interval '31 days'"
            " WHERE id = (SELECT min(id) + 1 FROM shipping.sync_logs)")
        shorter = await shipping.api.PruneSyncLogs(pb.PruneSyncLogsRequest(
            older_than=Duration(seconds=35 * 86400)), metadata=ADMIN, timeout=10)
        assert shorter.deleted == 1
        pruned = await shipping.api.PruneSyncLogs(pb.PruneSyncLogsRequest(), metadata=ADMIN,
                                                  timeout=10)
        assert pruned.deleted == 1
        assert await shipping.fetchval("SELECT count(*) FROM shipping.sync_logs") == 2

        # the scheduler prunes through SyncService scope `prune-logs` with the same default
        await shipping.fetchval(
            "UPDATE shipping.sync_logs SET \"timestamp\" = now() - interval '45 days'"
            " WHERE id = (SELECT min(id) FROM shipping.sync_logs)")
        dry = await shipping.sync("prune-logs", dry_run=True)
        assert dry.counts.deleted == 0
        assert await shipping.fetchval("SELECT count(*) FROM shipping.sync_logs") == 2
        scheduled = await shipping.sync("prune-logs")
        assert scheduled.counts.deleted == 1 and scheduled.operations[0].ok
        assert await shipping.fetchval("SELECT count(*) FROM shipping.sync_logs") == 1
