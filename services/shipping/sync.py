"""The ShipStation sync: per active integration, Phase 1 in order (warehouses → inventory
warehouses → inventory locations), then Phase 2 at once (products ∥ inventory).

Every step is a :meth:`SyncJob.operation`, so a failure is recorded and the others go on. Pages
are written as they arrive (the next page is fetched while one is written), one statement per
page. Products are incremental (modified since the last successful products sync, minus an
overlap) unless the job is ``full`` or there was no such sync; only a complete read marks rows
that are gone upstream as deleted (see full_read.py). A dry run reads and compares, writes
nothing, and reports what would change. Every run that is not dry leaves a row in ``sync_logs``,
also one cancelled by the service stopping (its interrupted operations marked failed).

Each integration's client is leased for the run (clients.py) and built inside its first
operation, so credentials no client can be built from fail that integration only. Integrations,
and the steps of Phase 2, run in task groups: nothing a job started runs on after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import structlog

from services.shipping.clients import ClientFactory, Clients
from services.shipping.full_read import FullRead
from services.shipping.shipstation import Page, ShipStationClient
from services.shipping.store import (
    INVENTORY,
    INVENTORY_LOCATIONS,
    INVENTORY_WAREHOUSES,
    PRODUCTS,
    WAREHOUSES,
    BulkTable,
    BulkWriter,
    IntegrationRow,
    ShippingStore,
)
from shared.sync import INTERRUPTED, Operation, SyncJob
from shared.timestamps import utcnow
from shared.upstream import UpstreamClient

__all__ = ["NO_ACTIVE_INTEGRATIONS", "SCOPES", "ClientFactory", "ShippingSync"]

log = structlog.get_logger("shipping.sync")

T = TypeVar("T")
# Decides, after a complete read, whether rows it did not see are to be marked deleted.
Recheck = Callable[[BulkWriter, Operation], Awaitable[bool]]

NO_ACTIVE_INTEGRATIONS = "no active integrations"
# Skus of unseen stock rows looked up per run before those rows are marked deleted (v2 allows
# 200 requests a minute); the rest wait for the next run.
RECHECKED_SKUS_PER_RUN = 100
# scope -> (phase 1 steps, phase 2 steps)
SCOPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "all": (("warehouses", "inventory_warehouses", "inventory_locations"),
            ("products", "inventory")),
    "warehouses": (("warehouses", "inventory_warehouses", "inventory_locations"), ()),
    "products": ((), ("products",)),
    "inventory": ((), ("inventory",)),
}


async def _prefetching(pages: AsyncIterator[T]) -> AsyncIterator[T]:
    """``pages``, with the next page already being fetched while the caller handles one."""
    iterator = pages.__aiter__()
    pending: asyncio.Future[T] = asyncio.ensure_future(anext(iterator))
    try:
        while True:
            try:
                page = await pending
            except StopAsyncIteration:
                return
            pending = asyncio.ensure_future(anext(iterator))
            yield page
    finally:
        if not pending.done():
            pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class ShippingSync:
    def __init__(
        self,
        store: ShippingStore,
        client_factory: ClientFactory,
        *,
        products_overlap: timedelta = timedelta(minutes=5),
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.clients = Clients(client_factory)
        self._overlap = products_overlap
        self._now = now

    async def close(self) -> None:
        await self.clients.close()

    def handler(self, scope: str) -> Callable[[SyncJob], Awaitable[None]]:
        async def run(job: SyncJob) -> None:
            await self.run(job, scope)

        return run

    async def run(self, job: SyncJob, scope: str) -> None:
        started = time.perf_counter()
        phase1, phase2 = SCOPES[scope]
        integrations: list[IntegrationRow] = []
        try:
            integrations = await self.store.list_integrations(active_only=True)
            total = max(1, len(integrations) * (len(phase1) + len(phase2)))
            # a task group: however an integration's work ends, none of it outlives the job
            async with asyncio.TaskGroup() as group:
                for integration in integrations:
                    group.create_task(
                        self._sync_integration(job, integration, phase1, phase2, total))
        except (asyncio.CancelledError, Exception) as error:
            ending = INTERRUPTED if isinstance(error, asyncio.CancelledError) else (
                f"failed: {type(error).__name__}")
            await self._finish(job, scope, started, integrations, ending=ending)
            raise
        await self._finish(job, scope, started, integrations)

    async def _finish(self, job: SyncJob, scope: str, started: float,
                      integrations: Sequence[IntegrationRow], *, ending: str = "") -> None:
        """Sums the run up and, unless dry, writes its ``sync_logs`` row, also for a run that
        was cancelled (the service stopping) or failed outside its operations (``ending``
        says how; the row then says so too)."""
        results = [op.as_dict() for op in job.operations]
        failed = [op.name for op in job.operations if not op.ok]
        message = NO_ACTIVE_INTEGRATIONS if not integrations and not ending else (
            f"{len(results) - len(failed)} of {len(results)} operations succeeded")
        if ending:
            message = f"{ending}; {message}"
        if job.dry_run:
            counts = job.counts
            message += (f"; dry run, nothing written: would create {counts.created},"
                        f" update {counts.updated}, mark deleted {counts.deleted}")
        job.progress(1.0, message)
        if job.dry_run:
            return
        try:
            await self.store.add_sync_log(
                job_id=job.id, scope=scope, full=job.full, results=results,
                duration_ms=round((time.perf_counter() - started) * 1000), message=message,
            )
        except Exception as error:
            if not ending:
                raise
            # the run is ending badly anyway (the database may be what failed): its error
            # goes on, and the job record still tells how it ended
            log.warning("sync_log_not_written", job_id=job.id, error=type(error).__name__)

    async def _sync_integration(
        self, job: SyncJob, integration: IntegrationRow, phase1: Sequence[str],
        phase2: Sequence[str], total: int,
    ) -> None:
        steps: dict[str, Callable[[SyncJob, IntegrationRow, ShipStationClient, Operation],
                                  Awaitable[None]]] = {
            "warehouses": self._warehouses,
            "inventory_warehouses": self._inventory_warehouses,
            "inventory_locations": self._inventory_locations,
            "products": self._products,
            "inventory": self._inventory,
        }

        async with self.clients.lease(integration) as lease:

            async def step(name: str) -> None:
                async with job.operation(f"{integration.name}/{name}") as op:
                    op.details["integration_id"] = str(integration.id)
                    # built here, so that unusable credentials fail this operation only
                    await steps[name](job, integration, lease.client(), op)
                done = len(job.operations)
                job.progress(min(1.0, done / total), f"{integration.name}/{name} done")

            for name in phase1:  # in order: a failure is recorded, the next step still runs
                await step(name)
            async with asyncio.TaskGroup() as group:
                for name in phase2:
                    group.create_task(step(name))

    # -- steps

    def _writer(self, table: BulkTable, integration: IntegrationRow, job: SyncJob) -> BulkWriter:
        return BulkWriter(self.store.pool, table, integration.id, dry_run=job.dry_run)

    @staticmethod
    def _record(op: Operation, writer: BulkWriter, half: UpstreamClient, before: int,
                pages: int) -> None:
        op.records = writer.distinct
        op.counts.add(writer.counts)
        op.details.update({
            "requests": str(half.stats.requests - before), "pages": str(pages),
            "db_round_trips": str(writer.round_trips),
        })
        prefix = "would_" if writer.dry_run else ""
        for change, keys in writer.samples.items():
            op.details[f"{prefix}{change}_sample"] = ", ".join(keys)

    async def _whole_list(
        self, job: SyncJob, integration: IntegrationRow, op: Operation, table: BulkTable,
        half: UpstreamClient, fetch: Callable[[], Awaitable[Sequence[Any]]],
    ) -> None:
        """A listing that comes in one response: complete by construction."""
        before = half.stats.requests
        writer = self._writer(table, integration, job)
        try:
            records = await fetch()
            await writer.write(records)
            await writer.mark_missing_deleted()
        finally:
            self._record(op, writer, half, before, 1)

    async def _paged(
        self, job: SyncJob, integration: IntegrationRow, op: Operation, table: BulkTable,
        half: UpstreamClient, pages: AsyncIterator[Page[Any]], *, full: bool,
        recheck: Recheck | None = None,
    ) -> None:
        """Writes every page; after a full read that provably saw everything, marks the rows
        it did not see as deleted (after ``recheck``, which may find some of them again)."""
        before = half.stats.requests
        writer = self._writer(table, integration, job)
        read = FullRead()
        try:
            async for page in _prefetching(pages):
                read.add(page)
                await writer.write(page.items)
            if full and self._complete(op, writer, read):
                if recheck is None or await recheck(writer, op):
                    await writer.mark_missing_deleted()
        finally:
            self._record(op, writer, half, before, read.pages)

    @staticmethod
    def _complete(op: Operation, writer: BulkWriter, read: FullRead) -> bool:
        reason = read.why_incomplete(writer.distinct)
        if reason is not None:
            op.details["deletions"] = f"not marked this run: {reason}"
            log.warning("sync_deletions_skipped", operation=op.name, reason=reason)
        return reason is None

    async def _warehouses(self, job: SyncJob, integration: IntegrationRow,
                          client: ShipStationClient, op: Operation) -> None:
        await self._whole_list(job, integration, op, WAREHOUSES, client.v1, client.warehouses)

    async def _inventory_warehouses(self, job: SyncJob, integration: IntegrationRow,
                                    client: ShipStationClient, op: Operation) -> None:
        await self._paged(job, integration, op, INVENTORY_WAREHOUSES, client.v2,
                          client.inventory_warehouse_pages(), full=True)

    async def _inventory_locations(self, job: SyncJob, integration: IntegrationRow,
                                   client: ShipStationClient, op: Operation) -> None:
        await self._paged(job, integration, op, INVENTORY_LOCATIONS, client.v2,
                          client.inventory_location_pages(), full=True)

    async def _products(self, job: SyncJob, integration: IntegrationRow,
                        client: ShipStationClient, op: Operation) -> None:
        run_started = self._now()
        since = None
        if not job.full and integration.products_synced_at is not None:
            since = integration.products_synced_at - self._overlap
        op.details["mode"] = "full" if since is None else f"modified since {since.isoformat()}"
        await self._paged(job, integration, op, PRODUCTS, client.v1,
                          client.product_pages(since), full=since is None)
        if not job.dry_run:
            await self.store.set_products_synced(integration.id, run_started)

    async def _inventory(self, job: SyncJob, integration: IntegrationRow,
                         client: ShipStationClient, op: Operation) -> None:
        await self._paged(job, integration, op, INVENTORY, client.v2, client.inventory_pages(),
                          full=True, recheck=partial(self._recheck_stock, client))

    @staticmethod
    async def _recheck_stock(client: ShipStationClient, writer: BulkWriter,
                             op: Operation) -> bool:
        """Looks the skus of stock rows the read did not see up one by one before they are
        marked deleted; whether any are left to mark. /v2/inventory takes no sort order, so a
        deletion and an addition between two page requests can keep ``total`` the same while
        shifting a live row past the read. A row found again is written; skus beyond
        :data:`RECHECKED_SKUS_PER_RUN` are spared until a later run."""
        missing = await writer.missing_keys()
        skus = sorted({key[0] for key in missing})
        checked = skus[:RECHECKED_SKUS_PER_RUN]
        for sku in checked:
            async for page in client.inventory_pages(sku):
                await writer.write(page.items)
        later = set(skus[RECHECKED_SKUS_PER_RUN:])
        writer.spare(key for key in missing if key[0] in later)
        if missing:
            op.details["skus_rechecked"] = str(len(checked))
        if later:
            op.details["skus_left_for_later"] = str(len(later))
        return bool(missing)
