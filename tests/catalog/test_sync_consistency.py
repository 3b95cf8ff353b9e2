"""Syncs while NetSuite changes under them: no live record is marked deleted, an edit
mid-fetch does not fail the job, and deletions are left to the next sync when NetSuite's
answers do not add up."""

from __future__ import annotations

import asyncpg
import pytest
from syncsuite.catalog.v1 import catalog_service_pb2 as pb
from syncsuite.sync.v1 import sync_pb2

from tests.catalog.conftest import Catalog, RunningSandbox, catalog_env, start_catalog

COMPLETED = sync_pb2.SYNC_STATUS_COMPLETED


def _customers(report: sync_pb2.SyncReport) -> sync_pb2.OperationResult:
    return next(o for o in report.operations if o.name == "customers")


@pytest.fixture
def env(service_env: dict[str, str], sandbox: RunningSandbox) -> dict[str, str]:
    return catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false",
                       NETSUITE_PAGE_SIZE="100")


async def _deleted_ids(database_url: str) -> list[int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT netsuite_id FROM catalog.customers"
                                      " WHERE deleted_at IS NOT NULL ORDER BY netsuite_id")
    finally:
        await connection.close()
    return [row["netsuite_id"] for row in rows]


async def _found(catalog: Catalog, netsuite_id: int) -> bool:
    reply = await catalog.search(f"CUST-{netsuite_id:06d}")
    return reply.total_size == 1


async def test_a_deletion_during_a_full_sync_marks_no_live_record_deleted(
    env: dict[str, str], sandbox: RunningSandbox, clean: None, database_url: str
) -> None:
    async with start_catalog(env) as catalog:
        assert (await catalog.sync("customers")).status == COMPLETED
        # record 50 goes once the first page (1-100) is read: offsets moved back then lost
        # record 101, and the full sync marked it deleted
        sandbox.hook.arm(lambda: sandbox.sandbox.remove("customer", 50))
        report = await catalog.sync("customers", full=True)
        assert report.status == COMPLETED and _customers(report).counts.deleted == 0
        assert await _found(catalog, 101)
        reply = await catalog.stub.GetCustomer(pb.GetCustomerRequest(netsuite_id="101"),
                                               timeout=5)
        assert reply.customer.entity_id == "CUST-000101"
        assert await _deleted_ids(database_url) == []
        # record 50 was read before it went: the next sync finds it gone
        report = await catalog.sync("customers", full=True)
        assert _customers(report).counts.deleted == 1
    assert await _deleted_ids(database_url) == [50]


async def test_deletions_wait_for_a_sync_whose_reads_add_up_to_netsuites_totals(
    env: dict[str, str], sandbox: RunningSandbox, clean: None, database_url: str
) -> None:
    async with start_catalog(env) as catalog:
        await catalog.sync("customers")
        # 250 goes after the first page reported 300 records: 299 are read
        sandbox.hook.arm(lambda: sandbox.sandbox.remove("customer", 250))
        report = await catalog.sync("customers", full=True)
        op = _customers(report)
        assert report.status == COMPLETED and op.counts.deleted == 0
        assert op.details["deletions"].startswith("skipped")
        assert await _deleted_ids(database_url) == []
        assert await _found(catalog, 250)  # the index agrees with PostgreSQL
        assert _customers(await catalog.sync("customers", full=True)).counts.deleted == 1

        # the incremental sync's id sweep alike
        sandbox.hook.arm(lambda: sandbox.sandbox.remove("customer", 260), sweep=True)
        op = _customers(await catalog.sync("customers"))
        assert op.details["mode"] == "incremental" and op.counts.deleted == 0
        assert op.details["deletions"].startswith("skipped")
        assert _customers(await catalog.sync("customers")).counts.deleted == 1
        assert not await _found(catalog, 260)
    assert await _deleted_ids(database_url) == [250, 260]


async def test_an_edit_during_an_incremental_fetch_does_not_fail_the_sync(
    service_env: dict[str, str], sandbox: RunningSandbox, clean: None
) -> None:
    env = catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false",
                      NETSUITE_PAGE_SIZE="50")
    async with start_catalog(env) as catalog:
        await catalog.sync("customers")
        changed = set(sandbox.mutate(entity="customers", share=0.5)["changed"])
        # a record below most changed ones is modified once the first page is read: offsets
        # moved on then read one record twice, and the write failed
        joining = min(set(sandbox.sandbox.tables["customer"]) - changed)
        sandbox.hook.arm(lambda: sandbox.sandbox.put("customer", joining, {"phone": "+1 555"}))
        report = await catalog.sync("customers")
        assert report.status == COMPLETED, report.error
        op = _customers(report)
        assert op.details["mode"] == "incremental" and op.counts.updated >= len(changed)
        # read now, or by the next sync (it joined behind the keyset)
        await catalog.sync("customers")
        reply = await catalog.stub.GetCustomer(
            pb.GetCustomerRequest(netsuite_id=str(joining)), timeout=5)
        assert reply.customer.phone == "+1 555"
