"""One bad value from NetSuite fails its record, never the sync: values PostgreSQL cannot hold
(a price beyond numeric(14, 2), NaN, NUL or a lone surrogate in text, a moment past year
9999, an id beyond bigint) are stored FAILED with the reason, or skipped when there is no id
to store them under."""

from __future__ import annotations

import asyncpg
from syncsuite.sync.v1 import sync_pb2

from tests.catalog.conftest import RunningSandbox, catalog_env, start_catalog

COMPLETED = sync_pb2.SYNC_STATUS_COMPLETED
BEYOND_BIGINT = str(2**63)


def _op(report: sync_pb2.SyncReport, name: str) -> sync_pb2.OperationResult:
    return next(o for o in report.operations if o.name == name)


async def test_values_postgresql_cannot_hold_fail_their_record_not_the_sync(
    service_env: dict[str, str], sandbox: RunningSandbox, clean: None, database_url: str
) -> None:
    sandbox.mutate(entity="items", put={
        "5": {"baseprice": "1e13"},
        "6": {"displayname": "Widget\x00X"},
        "7": {"baseprice": "NaN"},
        "8": {"lastmodifieddate": "9999-12-31 23:59:59"},
        BEYOND_BIGINT: {},
    })
    # a lone surrogate has no UTF-8 form to post it in: set in the process (served escaped)
    sandbox.sandbox.put("item", 9, {"itemid": "SKU-\ud800"})
    sandbox.mutate(entity="customers", put={"3": {"city": "Lyon\x00"}})
    env = catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false")
    async with start_catalog(env) as catalog:
        report = await catalog.sync("all")
        assert report.status == COMPLETED, report.error
        items = _op(report, "items").counts
        assert (items.failed, items.skipped, items.created) == (5, 1, 115)
        assert _op(report, "customers").counts.failed == 1
        assert (await catalog.search("CUST-000003")).total_size == 0  # not in the index

        # an incremental sync: its id sweep holds the id beyond bigint too
        sandbox.mutate(entity="items", share=0.05)
        again = await catalog.sync("items")
        assert again.status == COMPLETED, again.error
        assert _op(again, "items").details["mode"] == "incremental"
    connection = await asyncpg.connect(database_url)
    try:
        failed = {row["netsuite_id"]: row for row in await connection.fetch(
            "SELECT netsuite_id, sync_error, base_price, display_name FROM catalog.items"
            " WHERE sync_status = 'FAILED'")}
        city_error = await connection.fetchval(
            "SELECT sync_error FROM catalog.customers WHERE netsuite_id = 3"
            " AND sync_status = 'FAILED'")
    finally:
        await connection.close()
    assert sorted(failed) == [5, 6, 7, 8, 9]
    assert "baseprice is out of range" in failed[5]["sync_error"]
    assert "displayname holds a NUL" in failed[6]["sync_error"]
    assert failed[6]["display_name"] == "WidgetX"  # a new record keeps what could be read
    assert failed[7]["base_price"] is None  # NaN is not stored as a price
    assert "lastmodifieddate is not a date" in failed[8]["sync_error"]
    assert "itemid holds a NUL or a lone surrogate" in failed[9]["sync_error"]
    assert city_error is not None and "city holds a NUL" in city_error
