"""The `prices` sync scope: refresh StockX market data for the products that matter most.

One run: choose candidates (see candidates.py; smart refresh skips products fresh in every
region unless ``full``) → for each product, with at most ``concurrency`` at once and every
request paced by the client's token bucket: fetch its catalog entry once, then its market data
in every region; each product × region is written in its own transaction (raw snapshots by
COPY + latest), so a failed region or product is recorded and the run goes on → at the time
budget, products still running are cancelled and, with those not started, queued to lead the
next run → snapshots older than the retention age are pruned.

A *lasting* failure (StockX refused our credentials, or asked for a pause longer than we wait:
``StockXClient.lasting_failure``) fails its product and stops the run at once, as the time
budget would: every further call would fail the same way. A run in which every product
processed failed raises, so the job is FAILED.

The report has one operation per product (``product <id>``: details per region, and the job's
counts) and a ``prices`` operation with the figures of the seed's report (productsProcessed,
successCount, partialCount, failCount, totalSnapshots, durationSeconds, notReached…) in its
details only, so that the job's counts are the products' (see the README).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from services.pricing.candidates import Selection, select_candidates
from services.pricing.outcomes import (
    ProductOutcome,
    RegionOutcome,
    RunProducts,
    every_product_failed,
    split_answer,
)
from services.pricing.settings import PricingSettings
from services.pricing.stockx import StockXClient
from services.pricing.store import PricingStore, ProductRow, SnapshotRow
from shared.errors import Unavailable
from shared.sync import Operation, SyncJob
from shared.sync.job import describe_error
from shared.timestamps import utcnow
from shared.upstream import pause_deadline

__all__ = ["PriceSync"]

log = structlog.get_logger("pricing.sync")
Clock = Callable[[], float]
NOT_REACHED_LISTED = 50


class PriceSync:
    """The `prices` scope. ``clock`` must be the StockX client's: the run's deadline on it
    also bounds the pauses its token bucket sits out (``pause_deadline``)."""

    def __init__(
        self,
        store: PricingStore,
        client: StockXClient,
        settings: PricingSettings,
        *,
        clock: Clock = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.client = client
        self.settings = settings
        self._clock = clock
        self._now = now

    # -- candidates

    async def select(self, full: bool) -> Selection:
        settings = self.settings
        now = self._now()
        tiers = [
            await self.store.backlog(),
            await self.store.portfolio_products(),
            await self.store.popular_products(settings.popular_min_views),
            await self.store.recently_viewed(now - timedelta(hours=24)),
        ]
        everyone = list(dict.fromkeys(product for tier in tiers for product in tier))
        fresh: set[str] = set()
        if not full:
            fresh = await self.store.fresh_products(
                everyone, settings.regions, now - timedelta(hours=settings.staleness_hours))
        return select_candidates(tiers, settings.max_products_per_run, fresh, full=full)

    # -- the scope handler

    async def run(self, job: SyncJob) -> None:
        started = self._clock()
        deadline = started + self.settings.time_budget_seconds
        async with job.operation("candidates", isolate=False) as op:
            selection = await self.select(job.full)
            op.counts.skipped = len(selection.skipped_fresh)  # the job's `skipped`
            op.records = len(selection.chosen)
            op.details = {
                **{tier: str(n) for tier, n in selection.counts_by_tier().items()},
                "skipped_fresh": str(len(selection.skipped_fresh)),
                "over_cap": str(len(selection.over_cap)),
                "cap": str(self.settings.max_products_per_run),
            }
            if job.dry_run:
                op.details["would_sync"] = ",".join(selection.chosen[:NOT_REACHED_LISTED])
        if job.dry_run:
            job.progress(1.0, f"dry run: {len(selection.chosen)} products would be synced")
            return
        throttled_before = self.client.api.stats.throttled
        requests_before = self.client.api.stats.requests
        with pause_deadline(deadline):  # a longer pause StockX asks for stops the run
            products = await self._sync_products(job, selection.chosen, deadline)
        outcomes, unreached = products.outcomes, products.unreached
        done = [*outcomes, *selection.skipped_fresh]
        await self.store.update_backlog(done, unreached, job.id)
        async with job.operation("prices") as op:
            self._summarise(op, outcomes, unreached, self._clock() - started)
            op.details["upstreamRequests"] = str(self.client.api.stats.requests - requests_before)
            op.details["upstream429"] = str(self.client.api.stats.throttled - throttled_before)
            if products.stopped_by:
                op.ok, op.error = False, f"stopped early: {products.stopped_by}"[:500]
        await self.prune(job)
        job.progress(1.0, f"{len(outcomes)} products synced, {len(unreached)} not reached")
        if outcomes and all(outcome.status == "failed" for outcome in outcomes.values()):
            raise Unavailable(every_product_failed(products))

    async def prune(self, job: SyncJob) -> None:
        """Deletes raw snapshots older than the retention age (latest rows stay)."""
        async with job.operation("retention") as op:
            cutoff = self._now() - timedelta(days=self.settings.retention_days)
            op.details = {"older_than": cutoff.isoformat()}
            if not job.dry_run:
                op.counts.deleted = await self.store.prune_snapshots(cutoff)
                op.records = op.counts.deleted

    async def _sync_products(
        self, job: SyncJob, product_ids: list[str], deadline: float
    ) -> RunProducts:
        products = RunProducts(deque(product_ids))
        total = len(product_ids)
        workers: list[asyncio.Task[None]] = []

        async def worker() -> None:
            while products.queue and not products.stopped_by and self._clock() < deadline:
                product_id = products.queue.popleft()
                products.in_flight[product_id] = None
                outcome = await self._product(job, product_id, products)
                products.outcomes[product_id] = outcome
                del products.in_flight[product_id]
                job.progress(len(products.outcomes) / max(total, 1),
                             f"{len(products.outcomes)} of {total} products")
                if outcome.lasting_error and not products.stopped_by:
                    products.stopped_by = outcome.lasting_error
                    log.warning("pricing_run_stopped", job_id=job.id, reason=outcome.lasting_error)
                    for task in workers:  # their products go back to the backlog
                        if task is not asyncio.current_task():
                            task.cancel()

        workers.extend(asyncio.create_task(worker(), name="pricing-sync-worker")
                       for _ in range(min(self.settings.concurrency, total)))
        try:
            if workers:
                _, pending = await asyncio.wait(workers,
                                                timeout=max(0.0, deadline - self._clock()))
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                for task in workers:
                    if task.done() and not task.cancelled() and task.exception():
                        raise task.exception()  # type: ignore[misc]
        finally:
            for task in workers:
                task.cancel()
        if products.unreached and not products.stopped_by:
            log.info("pricing_time_budget_reached", job_id=job.id,
                     unreached=len(products.unreached))
        return products

    async def _product(self, job: SyncJob, product_id: str, products: RunProducts
                       ) -> ProductOutcome:
        outcome = ProductOutcome(product_id)
        async with job.operation(f"product {product_id}") as op:
            try:
                if await self.store.products_missing_catalog([product_id]):
                    await self._fetch_catalog(product_id)
                outcome.regions = list(await asyncio.gather(
                    *(self._region(job, product_id, currency)
                      for currency in self.settings.regions)))
            except asyncio.CancelledError:
                outcome.interrupted = True  # the operation records itself as failed
                op.error = (f"stopped early: {products.stopped_by}"[:500] if products.stopped_by
                            else "not finished within the time budget")
                raise
            except Exception as error:
                outcome.error = describe_error(error)
                outcome.error_lasting = self.client.lasting_failure(error)
                raise
            finally:
                self._describe(op, outcome)
        return outcome

    async def _fetch_catalog(self, product_id: str) -> None:
        product = await self.client.product(product_id)
        variants = await self.client.variants(product_id)
        await self.store.save_catalog(
            ProductRow(product_id, product.style_id, product.title, product.brand),
            [(variant.variant_id, variant.variant_value) for variant in variants
             if variant.variant_id],
        )

    async def _region(self, job: SyncJob, product_id: str, currency: str) -> RegionOutcome:
        try:
            market = await self.client.market_data(product_id, currency)
            taken = self._now()
            answered, left_out = split_answer(market, product_id, currency)
            rows = [
                SnapshotRow(product_id, item.variant_id, currency, item.lowest_ask,
                            item.highest_bid, item.sell_faster, item.earn_more,
                            item.flex_lowest_ask, item.last_sale, taken)
                for item in answered if item.variant_id
            ]
            if left_out:
                log.warning("pricing_region_mismatch", product_id=product_id, currency=currency,
                            error=left_out)
            return RegionOutcome(currency, await self.store.write_snapshots(rows, job.id),
                                 error=left_out)
        except Exception as error:
            log.warning("pricing_region_failed", product_id=product_id, currency=currency,
                        error=describe_error(error))
            return RegionOutcome(currency, error=describe_error(error),
                                 lasting=self.client.lasting_failure(error))

    @staticmethod
    def _describe(op: Operation, outcome: ProductOutcome) -> None:
        for region in outcome.regions:
            said = []
            if region.result is not None:
                result = region.result
                said.append(f"{result.snapshots} snapshots")
                op.counts.seen += result.snapshots
                op.counts.created += result.created
                op.counts.updated += result.updated
                op.counts.unchanged += result.stale
            if region.error:
                said.append(f"failed: {region.error}")
                op.counts.failed += 1
            op.details[region.currency] = "; ".join(said)
        op.records = outcome.snapshots
        if outcome.failed_regions:
            op.ok = False
            op.error = outcome.reason[:500]
        op.details["result"] = "not reached" if outcome.interrupted else outcome.status

    @staticmethod
    def _summarise(
        op: Operation, outcomes: dict[str, ProductOutcome], unreached: list[str], seconds: float
    ) -> None:
        statuses = [outcome.status for outcome in outcomes.values()]
        total_snapshots = sum(outcome.snapshots for outcome in outcomes.values())
        op.records = total_snapshots
        # No counts here: the product operations' counts already add up to the job's.
        op.details = {
            "productsProcessed": str(len(outcomes)),
            "successCount": str(statuses.count("ok")),
            "partialCount": str(statuses.count("partial")),
            "failCount": str(statuses.count("failed")),
            "totalSnapshots": str(total_snapshots),
            "durationSeconds": f"{seconds:.3f}",
            "notReached": str(len(unreached)),
            "notReachedProducts": ",".join(unreached[:NOT_REACHED_LISTED]),
        }
