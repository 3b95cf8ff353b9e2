"""The bulk delta on the real catalog schema: what an id sweep may mark deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.catalog.records import ITEMS, parse_row
from services.catalog.store import CatalogStore, IncomingRecord
from shared.db import create_pool
from tests.catalog.conftest import RunningSandbox, catalog_env, start_catalog


@pytest.fixture
async def pool(service_env: dict[str, str], sandbox: RunningSandbox, clean: None,
               database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with start_catalog(catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false")):
        pass  # its migrations made the schema
    connections = await create_pool(database_url, "catalog", max_size=2)
    try:
        yield connections
    finally:
        await connections.close()


def item(netsuite_id: int) -> IncomingRecord:
    parsed = parse_row(ITEMS, {
        "id": str(netsuite_id), "itemid": f"SKU-{netsuite_id}", "displayname": "Mug",
        "itemtype": "InvtPart", "baseprice": "4.20", "isinactive": "F",
        "lastmodifieddate": "2024-01-01 00:00:00"}, ZoneInfo("UTC"))
    return IncomingRecord(parsed.record, parsed.error)


async def test_a_record_the_sweep_missed_but_the_fetch_brought_is_not_deleted(
    pool: asyncpg.Pool,
) -> None:
    """An incremental sync's fetch and id sweep run side by side: a record created after the
    sweep read past its id is in the fetch only, and was inserted and deleted by one apply."""
    store = CatalogStore(pool)
    await store.apply(ITEMS, [item(1), item(2)], delete_missing=True)
    dry = await store.apply(ITEMS, [item(3)], present_ids=[1], dry_run=True)
    assert dry.counts.deleted == 1  # record 2 only
    result = await store.apply(ITEMS, [item(3)], present_ids=[1])
    assert (result.counts.created, result.counts.deleted) == (1, 1)
    deleted = dict(await pool.fetch("SELECT netsuite_id, deleted_at IS NOT NULL FROM items"))
    assert deleted == {1: False, 2: True, 3: False}
