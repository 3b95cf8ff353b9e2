"""Sync scopes through the real SyncService: exact delta counts, incremental with look-back,
id-only deletion sweep, dry run, FAILED records, ABORTED on a concurrent sync."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
from syncsuite.catalog.v1 import catalog_service_pb2 as pb
from syncsuite.sync.v1 import sync_pb2

from services.catalog.sandbox import SandboxConfig
from tests.catalog.conftest import ADMIN, RunningSandbox, catalog_env, start_catalog

COMPLETED = sync_pb2.SYNC_STATUS_COMPLETED


def _counts(report: sync_pb2.SyncReport, operation: str) -> dict[str, int]:
    op = next(o for o in report.operations if o.name == operation)
    return {name: getattr(op.counts, name) for name in
            ("seen", "created", "updated", "unchanged", "deleted", "failed")}


@pytest.fixture
def env(service_env: dict[str, str], sandbox: RunningSandbox) -> dict[str, str]:
    return catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false")


async def test_delta_counts_are_exact_on_a_changed_data_set(
    env: dict[str, str], sandbox: RunningSandbox, clean: None, database_url: str
) -> None:
    async with start_catalog(env) as catalog:
        first = await catalog.sync("customers")
        assert first.status == COMPLETED
        assert _counts(first, "customers") == {
            "seen": 300, "created": 300, "updated": 0, "unchanged": 0, "deleted": 0, "failed": 0}
        round_trips = next(o for o in first.operations if o.name == "customers"
                           ).details["database_round_trips"]

        change = sandbox.mutate(entity="customers", share=0.1, delete_share=0.02, add=4)
        changed, deleted, added = (len(change["changed"]), len(change["deleted"]),
                                   len(change["added"]))
        assert (changed, deleted, added) == (30, 5, 4)
        full = await catalog.sync("customers", full=True)
        assert _counts(full, "customers") == {
            "seen": 299, "created": 4, "updated": 30, "unchanged": 265, "deleted": 5,
            "failed": 0}
        # a bigger data set costs no more database round trips
        assert next(o for o in full.operations if o.name == "customers"
                    ).details["database_round_trips"] == round_trips

        # incremental: only what changed since the cursor (minus the look-back), and an
        # id-only sweep for deletions
        change = sandbox.mutate(entity="customers", share=0.05, delete_share=0.01, add=2)
        # answered (and kept) by the index of before: the new index must not answer so
        added_id, deleted_id = change["added"][0], change["deleted"][0]
        changed_id = change["changed"][0]
        assert (await catalog.search(f"CUST-{deleted_id:06d}")).total_size == 1
        assert (await catalog.search(f"CUST-{added_id:06d}")).total_size == 0
        before = await catalog.search(f"CUST-{changed_id:06d}")
        incremental = await catalog.sync("customers")
        op = next(o for o in incremental.operations if o.name == "customers")
        assert op.details["mode"] == "incremental"
        counts = _counts(incremental, "customers")
        assert counts["updated"] == len(change["changed"]) == 15
        assert counts["created"] == 2 and counts["deleted"] == len(change["deleted"]) == 3
        assert counts["seen"] < 100  # not the whole data set
        assert sandbox.sandbox.id_sweeps["customer"] == 1
        # the index follows in memory: added records found, deleted ones gone
        assert op.details["publish_from"] == "memory"
        assert (await catalog.search(f"CUST-{added_id:06d}")).total_size == 1
        assert (await catalog.search(f"CUST-{deleted_id:06d}")).total_size == 0
        after = await catalog.search(f"CUST-{changed_id:06d}")
        assert after.customers != before.customers
        assert after.customers[0].last_modified_time != before.customers[0].last_modified_time
        reply = await catalog.stub.GetCustomer(
            pb.GetCustomerRequest(netsuite_id=str(changed_id)), timeout=5)
        upstream_phone = sandbox.sandbox.tables["customer"][changed_id]["phone"]
        assert reply.customer.phone == upstream_phone

    connection = await asyncpg.connect(database_url)
    try:
        live = await connection.fetchval(
            "SELECT count(*) FROM catalog.customers WHERE deleted_at IS NULL")
        gone = await connection.fetchval(
            "SELECT count(*) FROM catalog.customers WHERE deleted_at IS NOT NULL")
    finally:
        await connection.close()
    assert (live, gone) == (len(sandbox.sandbox.tables["customer"]), 8)


async def test_a_dry_run_reports_the_changes_and_writes_nothing(
    env: dict[str, str], sandbox: RunningSandbox, clean: None
) -> None:
    async with start_catalog(env) as catalog:
        await catalog.sync("items")
        change = sandbox.mutate(entity="items", share=0.1, delete_share=0.05, add=1)
        assert [len(change[k]) for k in ("changed", "deleted", "added")] == [12, 5, 1]
        dry = await catalog.sync("items", full=True, dry_run=True)
        assert dry.dry_run and dry.status == COMPLETED
        expected = {"seen": 116, "created": 1, "updated": 12, "unchanged": 103, "deleted": 5,
                    "failed": 0}
        assert _counts(dry, "items") == expected
        real = await catalog.sync("items", full=True)
        assert _counts(real, "items") == expected  # the dry run wrote nothing


async def test_failed_records_are_stored_failed_and_the_job_goes_on(
    env: dict[str, str], sandbox: RunningSandbox, clean: None, database_url: str
) -> None:
    sandbox.mutate(entity="customers", share=0.0, invalid=[7, 42, 99])
    async with start_catalog(env) as catalog:
        report = await catalog.sync("customers")
        assert report.status == COMPLETED
        assert _counts(report, "customers")["failed"] == 3
        assert _counts(report, "customers")["created"] == 297
        missing = await catalog.search("CUST-000042")
        assert missing.total_size == 0  # failed records stay out of the index
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT netsuite_id, sync_error FROM catalog.customers WHERE sync_status = 'FAILED'"
            " ORDER BY netsuite_id")
    finally:
        await connection.close()
    assert [r["netsuite_id"] for r in rows] == [7, 42, 99]
    assert all("email is not an address" in r["sync_error"] for r in rows)


async def test_a_concurrent_sync_of_the_same_scope_is_aborted_with_the_running_job(
    service_env: dict[str, str], clean: None
) -> None:
    slow = SandboxConfig(customers=300, items=10, latency_ms=400)
    with RunningSandbox(slow) as sandbox:
        env = catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false",
                          NETSUITE_PAGE_SIZE="100")
        async with start_catalog(env) as catalog:
            running = await catalog.sync("customers", background=True)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await catalog.sync("customers")
            assert raised.value.code() == grpc.StatusCode.ABORTED
            assert running.job_id in (raised.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as raised_all:
                await catalog.sync("all")  # shares the customers lock
            assert raised_all.value.code() == grpc.StatusCode.ABORTED
            for _ in range(100):
                job = await catalog.sync_stub.GetSyncJob(
                    sync_pb2.GetSyncJobRequest(job_id=running.job_id), metadata=ADMIN, timeout=5)
                if job.report.status != sync_pb2.SYNC_STATUS_RUNNING:
                    break
                await asyncio.sleep(0.1)
            assert job.report.status == COMPLETED


@pytest.mark.parametrize(("netsuite_zone", "assumed_zone"), [
    ("Pacific/Kiritimati", "Pacific/Pago_Pago"),  # NetSuite 25 h ahead of what we assume
    ("Pacific/Pago_Pago", "Pacific/Kiritimati"),  # 25 h behind
])
async def test_incremental_sync_misses_nothing_whatever_netsuites_time_zone(
    service_env: dict[str, str], clean: None, netsuite_zone: str, assumed_zone: str
) -> None:
    with RunningSandbox(SandboxConfig(customers=200, items=5, timezone=netsuite_zone)) as sandbox:
        env = catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false",
                          NETSUITE_TIMEZONE=assumed_zone)
        async with start_catalog(env) as catalog:
            await catalog.sync("customers")
            for _ in range(2):
                change = sandbox.mutate(entity="customers", share=0.1, add=1)
                report = await catalog.sync("customers")
                op = next(o for o in report.operations if o.name == "customers")
                assert op.details["mode"] == "incremental"
                assert op.counts.updated == len(change["changed"]) == 20
                assert op.counts.created == 1


async def test_a_full_sync_whose_database_write_fails_publishes_nothing(
    env: dict[str, str], sandbox: RunningSandbox, clean: None, database_url: str
) -> None:
    """The index and snapshot of a full sync are made while PostgreSQL writes: a write that
    fails leaves every tier as it was."""
    connection = await asyncpg.connect(database_url)
    try:
        async with start_catalog(env) as catalog:
            assert (await catalog.sync("customers")).status == COMPLETED
            before = await catalog.stub.GetCacheStatus(pb.GetCacheStatusRequest(), timeout=5)
            sandbox.mutate(entity="customers", share=0.0, add=1)  # customer 301 appears
            await connection.execute("""
                CREATE FUNCTION catalog.refuse_writes() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END $$;
                CREATE TRIGGER refuse_writes BEFORE INSERT OR UPDATE ON catalog.customers
                    FOR EACH ROW EXECUTE FUNCTION catalog.refuse_writes();
            """)
            try:
                failed = await catalog.sync("customers", full=True)
            finally:
                await connection.execute("DROP FUNCTION catalog.refuse_writes() CASCADE")
            assert failed.status == sync_pb2.SYNC_STATUS_FAILED
            assert "No space left on device" in failed.error
            assert (await catalog.search("CUST-000301")).total_size == 0
            after = await catalog.stub.GetCacheStatus(pb.GetCacheStatusRequest(), timeout=5)
            assert after.entities[0].index_version == before.entities[0].index_version

            assert (await catalog.sync("customers", full=True)).status == COMPLETED
            assert (await catalog.search("CUST-000301")).total_size == 1
    finally:
        await connection.close()
