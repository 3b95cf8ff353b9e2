"""Incremental product syncs read newest first and stop at the cursor: edits of old products
are found whatever ShipStation's startDate means, and an edit during the read is not lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from services.shipping.sandbox import ShipStationSandbox
from services.shipping.shipstation import parse_v1_date
from tests.shipping.conftest import StartShipping, small_config
from tests.shipping.test_sync import ops


async def test_edits_of_old_products_are_found_when_start_date_means_created(
    start_shipping: StartShipping,
) -> None:
    sandbox = ShipStationSandbox(small_config(start_date_means="created"))
    async with start_shipping(sandbox) as shipping:
        await shipping.add_account(1)
        await shipping.sync("all")
        changes = sandbox.mutate()[1]  # edits products created years ago
        products = ops(await shipping.sync("products"))["store-1/products"]
        assert products.details["mode"].startswith("modified since")
        assert products.details["requests"] == "1"  # the first page reaches older products
        assert products.counts.updated == changes["edited"] > 0
        assert products.counts.created == changes["added"]


async def test_an_edit_during_an_incremental_read_is_not_lost(
    start_shipping: StartShipping,
) -> None:
    # half of the products change, so the incremental read takes two pages; no overlap, so
    # a product skipped by the read would never be read again
    sandbox = ShipStationSandbox(small_config(mutation_share=0.5))
    async with start_shipping(sandbox, env={"SHIPPING_PRODUCTS_OVERLAP_SECONDS": "0"}) as shipping:
        await shipping.add_account(1)
        await shipping.sync("all")
        account = sandbox.account(1)
        before = {pid: p["modifyDate"] for pid, p in account.products.items()}
        sandbox.mutate()
        changed = [pid for pid, p in account.products.items()
                   if pid in before and p["modifyDate"] != before[pid]]
        assert len(changed) > 50
        # the changed product that sorts first by id is edited again between the two pages
        again = min(changed)
        sandbox.before_request(
            "/products", 2, lambda: account.edit_product(again, datetime.now(UTC)))
        first = ops(await shipping.sync("products"))["store-1/products"]
        assert first.ok and first.details["pages"] == "2"
        assert ops(await shipping.sync("products"))["store-1/products"].ok
        text = await shipping.fetchval(
            "SELECT json_object_agg(product_id, modified_at) FROM shipping.products")
        stored = {int(pid): datetime.fromisoformat(moment)
                  for pid, moment in json.loads(str(text)).items()}
        stale = [pid for pid, product in account.products.items()
                 if stored.get(pid) != parse_v1_date(product["modifyDate"])]
        assert stale == []
