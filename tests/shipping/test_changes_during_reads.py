"""Upstream changing between two page requests of a full read: no live record is marked
deleted; deletions wait for a read that provably saw everything."""

from __future__ import annotations

from datetime import UTC, datetime

from services.shipping.sandbox import ShipStationSandbox
from tests.shipping.conftest import Shipping, StartShipping, small_config
from tests.shipping.test_sync import COMPLETED, ops


async def _deleted(shipping: Shipping, table: str) -> object:
    return await shipping.fetchval(
        f"SELECT count(*) FROM shipping.{table} WHERE deleted_at IS NOT NULL")


async def test_products_changing_between_pages_mark_no_live_product_deleted(
    start_shipping: StartShipping,
) -> None:
    async with start_shipping() as shipping:
        await shipping.add_account(1)
        await shipping.sync("all")
        account = shipping.sandbox.account(1)
        by_age = sorted(account.products.values(), key=lambda p: (p["modifyDate"], p["productId"]))

        # the oldest product is edited before page 2 is asked for: read newest first, it moves
        # to the front, so it is missed and the last product of page 1 is read twice
        oldest = by_age[0]["productId"]
        shipping.sandbox.before_request(
            "/products", 2, lambda: account.edit_product(oldest, datetime.now(UTC)))
        edited = ops(await shipping.sync("products", full=True))["store-1/products"]
        assert edited.ok and edited.counts.deleted == 0
        assert edited.details["deletions"].endswith("119 distinct records read but the total"
                                                    " is 120")
        assert edited.counts.seen == 120 and edited.records == 119  # distinct records
        assert await _deleted(shipping, "products") == 0

        # two products are deleted before page 2: one read on page 1, one by product id first
        gone = {by_age[-1]["productId"], min(account.products)}
        shipping.sandbox.before_request(
            "/products", 2, lambda: [account.delete_product(pid) for pid in gone])
        deleting = ops(await shipping.sync("products", full=True))["store-1/products"]
        assert deleting.ok and deleting.counts.deleted == 0
        assert "the total changed during the read" in deleting.details["deletions"]
        assert await _deleted(shipping, "products") == 0

        # a read with nothing changing under it marks exactly those two
        settled = ops(await shipping.sync("products", full=True))["store-1/products"]
        assert "deletions" not in settled.details and settled.counts.deleted == 2
        assert await shipping.fetchval(
            "SELECT array_agg(product_id ORDER BY product_id) FROM shipping.products"
            " WHERE deleted_at IS NOT NULL") == sorted(gone)


async def test_stock_deleted_between_pages_marks_no_live_row_deleted(
    start_shipping: StartShipping,
) -> None:
    async with start_shipping() as shipping:
        await shipping.add_account(1)
        await shipping.sync("all")
        account = shipping.sandbox.account(1)
        first_sku = min(account.products.values(), key=lambda p: p["sku"])  # on page 1
        shipping.sandbox.before_request(
            "/v2/inventory", 2, lambda: account.delete_product(first_sku["productId"]))
        deleting = ops(await shipping.sync("inventory"))["store-1/inventory"]
        assert deleting.ok and deleting.counts.deleted == 0
        assert "the total changed during the read" in deleting.details["deletions"]
        assert await _deleted(shipping, "inventory") == 0
        settled = ops(await shipping.sync("inventory"))["store-1/inventory"]
        assert settled.counts.deleted == 2  # the deleted product's two stock rows


async def test_a_deletion_and_an_addition_keeping_the_total_are_rechecked_by_sku(
    start_shipping: StartShipping,
) -> None:
    async with start_shipping() as shipping:
        await shipping.add_account(1)
        await shipping.sync("all")
        account = shipping.sandbox.account(1)
        first_sku = min(account.products.values(), key=lambda p: p["sku"])

        def replace_one() -> None:
            # two rows gone from page 1 and two added after the read's position: the total
            # stays 240, and the two live rows shifted back onto page 1 are never read
            account.delete_product(first_sku["productId"])
            account.add_product(datetime.now(UTC), sku="ZZZ-added-late")

        shipping.sandbox.before_request("/v2/inventory", 2, replace_one)
        inventory = ops(await shipping.sync("inventory"))["store-1/inventory"]
        assert inventory.ok and "deletions" not in inventory.details
        assert inventory.details["skus_rechecked"] in ("1", "2")
        assert inventory.counts.deleted == 0
        assert await _deleted(shipping, "inventory") == 0
        settled = ops(await shipping.sync("inventory"))["store-1/inventory"]
        assert settled.counts.deleted == 2 and settled.details["skus_rechecked"] == "1"


async def test_v2_pages_without_a_pages_field_are_all_read(start_shipping: StartShipping) -> None:
    sandbox = ShipStationSandbox(small_config(v2_reports_pages=False))
    async with start_shipping(sandbox) as shipping:
        await shipping.add_account(1)
        for _ in range(2):
            report = await shipping.sync("all", full=True)
            assert report.status == COMPLETED, report.error
            inventory = ops(report)["store-1/inventory"]
            assert inventory.details["pages"] == "5" and inventory.records == 240
            assert "deletions" not in inventory.details
        assert inventory.counts.deleted == 0
        assert await shipping.fetchval("SELECT count(*) FROM shipping.inventory") == 240
        assert await _deleted(shipping, "inventory") == 0

