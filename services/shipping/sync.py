"""The ShipStation sync: per active integration, Phase 1 in order (warehouses → inventory
warehouses → inventory locations), then Phase 2 at once (products ∥ inventory).

Every step is a :meth:`SyncJob.operation`, so a failure is recorded and the others go on. Pages
are written as they arrive (the next page is fetched while one is written), one statement per
page. Products are incremental (modified since the last successful products sync, minus an
overlap) unless the job is ``full`` or there was no such sync; only a complete read marks rows
that are gone upstream as deleted. A dry run reads and compares, writes nothing, and reports
what would change. Every run (not dry) leaves a row in ``sync_logs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from services.shipping.shipstation import ShipStationClient
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
from shared.sync import Operation, SyncJob
from shared.timestamps import utcnow
from shared.upstream import UpstreamClient

__all__ = ["NO_ACTIVE_INTEGRATIONS", "SCOPES", "ClientFactory", "ShippingSync"]

log = structlog.get_logger("shipping.sync")

ClientFactory = Callable[[IntegrationRow], ShipStationClient]
T = TypeVar("T")

NO_ACTIVE_INTEGRATIONS = "no active integrations"
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
        self._client_factory = client_factory
        self._overlap = products_overlap
        self._now = now
        self._clients: dict[uuid.UUID, tuple[tuple[str, str, str], ShipStationClient]] = {}

    def client_for(self, integration: IntegrationRow) -> ShipStationClient:
        """One client per integration, kept across runs so its limiters remember the quota."""
        cached = self._clients.get(integration.id)
        if cached is not None and cached[0] == integration.fingerprint:
            return cached[1]
        client = self._client_factory(integration)
        if cached is not None:
            asyncio.get_running_loop().create_task(cached[1].aclose())
        self._clients[integration.id] = (integration.fingerprint, client)
        return client

    async def close(self) -> None:
        clients = [client for _, client in self._clients.values()]
        self._clients.clear()
        for client in clients:
            await client.aclose()

    def handler(self, scope: str) -> Callable[[SyncJob], Awaitable[None]]:
        async def run(job: SyncJob) -> None:
            await self.run(job, scope)

        return run

    async def run(self, job: SyncJob, scope: str) -> None:
        started = time.perf_counter()
        phase1, phase2 = SCOPES[scope]
        integrations = await self.store.list_integrations(active_only=True)
        total = max(1, len(integrations) * (len(phase1) + len(phase2)))
        if not integrations:
            job.progress(1.0, NO_ACTIVE_INTEGRATIONS)
        else:
            await asyncio.gather(*(
                self._sync_integration(job, integration, phase1, phase2, total)
                for integration in integrations
            ))
        results = [op.as_dict() for op in job.operations]
        failed = [op.name for op in job.operations if not op.ok]
        message = NO_ACTIVE_INTEGRATIONS if not integrations else (
            f"{len(results) - len(failed)} of {len(results)} operations succeeded")
        if job.dry_run:
            counts = job.counts
            message += (f"; dry run, nothing written: would create {counts.created},"
                        f" update {counts.updated}, mark deleted {counts.deleted}")
        job.progress(1.0, message)
        if not job.dry_run:
            await self.store.add_sync_log(
                job_id=job.id, scope=scope, full=job.full, results=results,
                duration_ms=round((time.perf_counter() - started) * 1000), message=message,
            )

    async def _sync_integration(
        self, job: SyncJob, integration: IntegrationRow, phase1: Sequence[str],
        phase2: Sequence[str], total: int,
    ) -> None:
        client = self.client_for(integration)
        steps: dict[str, Callable[[SyncJob, IntegrationRow, ShipStationClient, Operation],
                                  Awaitable[None]]] = {
            "warehouses": self._warehouses,
            "inventory_warehouses": self._inventory_warehouses,
            "inventory_locations": self._inventory_locations,
            "products": self._products,
            "inventory": self._inventory,
        }

        async def step(name: str) -> None:
            async with job.operation(f"{integration.name}/{name}") as op:
                op.details["integration_id"] = str(integration.id)
                await steps[name](job, integration, client, op)
            done = len(job.operations)
            job.progress(min(1.0, done / total), f"{integration.name}/{name} done")

        for name in phase1:  # in order: a failure is recorded, the next step still runs
            await step(name)
        await asyncio.gather(*(step(name) for name in phase2))

    # -- steps

    def _writer(self, table: BulkTable, integration: IntegrationRow, job: SyncJob) -> BulkWriter:
        return BulkWriter(self.store.pool, table, integration.id, dry_run=job.dry_run)

    @staticmethod
    def _record(op: Operation, writer: BulkWriter, half: UpstreamClient, before: int,
                pages: int) -> None:
        op.records = writer.counts.seen
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
        before = half.stats.requests
        writer = self._writer(table, integration, job)
        try:
            records = await fetch()
            await writer.write(records)
            await writer.mark_missing_deleted()
        finally:
            self._record(op, writer, half, before, 1)

    async def _warehouses(self, job: SyncJob, integration: IntegrationRow,
                          client: ShipStationClient, op: Operation) -> None:
        await self._whole_list(job, integration, op, WAREHOUSES, client.v1, client.warehouses)

    async def _inventory_warehouses(self, job: SyncJob, integration: IntegrationRow,
                                    client: ShipStationClient, op: Operation) -> None:
        await self._whole_list(job, integration, op, INVENTORY_WAREHOUSES, client.v2,
                               client.inventory_warehouses)

    async def _inventory_locations(self, job: SyncJob, integration: IntegrationRow,
                                   client: ShipStationClient, op: Operation) -> None:
        await self._whole_list(job, integration, op, INVENTORY_LOCATIONS, client.v2,
                               client.inventory_locations)

    async def _products(self, job: SyncJob, integration: IntegrationRow,
                        client: ShipStationClient, op: Operation) -> None:
        run_started = self._now()
        since = None
        if not job.full and integration.products_synced_at is not None:
            since = integration.products_synced_at - self._overlap
        op.details["mode"] = "full" if since is None else f"modified since {since.isoformat()}"
        before = client.v1.stats.requests
        writer = self._writer(PRODUCTS, integration, job)
        pages = 0
        try:
            async for products, _, _ in _prefetching(client.product_pages(since)):
                pages += 1
                await writer.write(products)
            if since is None:
                await writer.mark_missing_deleted()
        finally:
            self._record(op, writer, client.v1, before, pages)
        if not job.dry_run:
            await self.store.set_products_synced(integration.id, run_started)

    async def _inventory(self, job: SyncJob, integration: IntegrationRow,
                         client: ShipStationClient, op: Operation) -> None:
        before = client.v2.stats.requests
        writer = self._writer(INVENTORY, integration, job)
        pages = 0
        try:
            async for levels, _, _ in _prefetching(client.inventory_pages()):
                pages += 1
                await writer.write(levels)
            await writer.mark_missing_deleted()
        finally:
            self._record(op, writer, client.v2, before, pages)
