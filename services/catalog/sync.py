"""The catalog's sync scopes: customers, items, all (both) and kpis.

An entity sync fetches from NetSuite — everything (``full``, or the first time), or only what
changed since the cursor minus a look-back overlap (so a record modified near the cursor, or
stamped in another time zone, is never missed) plus an id-only sweep that finds deletions —
then writes the delta to PostgreSQL in bulk, and (unless ``dry_run``) publishes the new data
set to Redis and every replica's index. Invalid records are stored FAILED; the job goes on.

Records are taken as deleted only from a fetch (or sweep) that adds up to the totals NetSuite
reported (``Fetched.complete``), and never one that this very sync fetched (created after the
sweep read past its id). A sync that cannot tell leaves deletions to the next one.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from services.catalog.kpis import KpiService
from services.catalog.netsuite import Fetched, NetSuiteClient
from services.catalog.records import ENTITIES, EntitySpec
from services.catalog.store import CatalogStore, IncomingRecord
from services.catalog.tiers import EntityTiers, PreparedPublish, PublishTicket, parse_rows
from shared.sync import Operation, SyncJob

__all__ = ["CatalogSync"]

DELETIONS_SKIPPED = ("skipped: the rows read did not add up to the totals NetSuite reported"
                     " (records changed during the fetch); the next sync marks them")


class CatalogSync:
    def __init__(
        self, *, client: NetSuiteClient, store: CatalogStore, tiers: dict[str, EntityTiers],
        kpis: KpiService, lookback: timedelta,
    ) -> None:
        self._client = client
        self._store = store
        self._tiers = tiers
        self._kpis = kpis
        self._lookback = lookback

    async def customers(self, job: SyncJob) -> None:
        ok = await self._entity(job, ENTITIES["customers"], 0.0, 0.9)
        if ok and not job.dry_run:
            await self._refresh_kpis(job)

    async def items(self, job: SyncJob) -> None:  # the KPI view counts items too
        ok = await self._entity(job, ENTITIES["items"], 0.0, 0.9)
        if ok and not job.dry_run:
            await self._refresh_kpis(job)

    async def all(self, job: SyncJob) -> None:
        customers_ok = await self._entity(job, ENTITIES["customers"], 0.0, 0.6)
        items_ok = await self._entity(job, ENTITIES["items"], 0.6, 0.9)
        if (customers_ok or items_ok) and not job.dry_run:
            await self._refresh_kpis(job)

    async def kpis(self, job: SyncJob) -> None:
        await self._refresh_kpis(job)

    async def _refresh_kpis(self, job: SyncJob) -> None:
        async with job.operation("kpis") as op:
            if job.dry_run:
                op.details["skipped"] = "dry run"
                return
            row, seconds = await self._kpis.refresh(f"sync {job.id} ({job.reason})")
            op.records = 1
            op.details["refresh_s"] = f"{seconds:.4f}"
            op.details["total_customers"] = str(row.values.get("total_customers", 0))

    async def _entity(self, job: SyncJob, spec: EntitySpec, start: float, end: float) -> bool:
        ok = False
        async with job.operation(spec.name) as op:
            tiers = self._tiers[spec.name]
            ticket = await tiers.ticket()  # before the fetch: see PublishTicket
            cursor = await self._store.cursor(spec)
            since = None if job.full or cursor is None else cursor - self._lookback
            full = since is None
            op.details["mode"] = "full" if full else "incremental"
            if since is not None:
                op.details["since"] = since.isoformat()
            job.progress(start, f"fetching {spec.name} from NetSuite")
            fetch_started = time.perf_counter()
            fetched, present = await self._fetch(spec, since)
            fetch_seconds = time.perf_counter() - fetch_started
            incoming, skipped = await asyncio.to_thread(parse_rows, spec, fetched.rows,
                                                        self._client.zone)
            op.counts.skipped = skipped
            op.details["fetch_s"] = f"{fetch_seconds:.3f}"
            # a complete full fetch is the whole valid data set: its index and snapshot are
            # made while PostgreSQL writes, and published once the write has committed
            whole = full and fetched.complete
            if not (whole or present is not None):  # deletions known from neither
                op.details["deletions"] = DELETIONS_SKIPPED
            job.progress(start + (end - start) / 2, f"writing {len(incoming)} {spec.name}")
            preparing = None if job.dry_run or not whole else asyncio.create_task(
                tiers.prepare([item.record for item in incoming if not item.error],
                              datetime.now(UTC), ticket))
            try:
                await self._write_and_publish(job, op, spec, incoming, whole, present, ticket,
                                              preparing)
            finally:
                if preparing is not None and not preparing.done():
                    preparing.cancel()  # the write failed: nothing is published
            ok = True
        job.progress(end, "")  # the job's message becomes its summary at the end
        return ok

    async def _fetch(self, spec: EntitySpec, since: datetime | None
                     ) -> tuple[Fetched, list[int] | None]:
        """Everything (``since`` None), or what changed since ``since`` and the id sweep
        (None when it is not complete: see NetSuiteClient.fetch_ids)."""
        if since is None:
            return await self._client.fetch(spec), None
        changed, present = await asyncio.gather(
            self._client.fetch(spec, since), self._client.fetch_ids(spec))
        return changed, present

    async def _write_and_publish(
        self, job: SyncJob, op: Operation, spec: EntitySpec, incoming: list[IncomingRecord],
        whole: bool, present: list[int] | None, ticket: PublishTicket,
        preparing: asyncio.Task[PreparedPublish] | None,
    ) -> None:
        """The delta into PostgreSQL, then (unless a dry run) the cursor, and the data set to
        Redis and this replica's index: the prepared one, or the changes merged in. What
        vanished is marked deleted when ``incoming`` is the ``whole`` data set, or is not in
        ``present`` (the id sweep)."""
        result = await self._store.apply(
            spec, incoming, dry_run=job.dry_run, delete_missing=whole, present_ids=present,
        )
        op.records = len(incoming)
        op.counts.add(result.counts)
        op.details.update({
            "write_s": f"{result.seconds:.3f}",
            "database_round_trips": str(result.round_trips),
            "upstream_requests": str(self._client.http.stats.requests),
        })
        if job.dry_run:
            return
        newest = max((item.record["last_modified"] for item in incoming
                      if item.record.get("last_modified")), default="")
        if newest:
            await self._store.set_cursor(spec, datetime.fromisoformat(newest))
        publish_started = time.perf_counter()
        tiers = self._tiers[spec.name]
        if preparing is not None:
            if not await tiers.publish_prepared(await preparing):
                op.details["publish_from"] = "dropped: the cache was cleared"
        else:  # changes only (or a data set that did not add up): merged into the current one
            valid = [item.record for item in incoming if not item.error]
            removed = {item.record["netsuite_id"] for item in incoming if item.error}
            if present is not None and tiers.index is not None:
                vanished = set(tiers.index.by_id).difference(present)
                # a record this sync fetched is live, even if created after the sweep
                removed |= vanished.difference(record["netsuite_id"] for record in valid)
            op.details["publish_from"] = await tiers.apply_changes(valid, removed, ticket)
        op.details["publish_s"] = f"{time.perf_counter() - publish_started:.3f}"
