"""The three tiers of one entity, and how a replica keeps its index warm.

    get_index()           the warm index at once; when cold, one load per process (single
                          flight): Redis snapshot → PostgreSQL (served while NetSuite is
                          fetched in the background: stale-while-revalidate) → NetSuite
    fetch_upstream()      one NetSuite fetch across replicas (a Redis lease): the others wait
                          for the snapshot it writes; writes index, Redis and PostgreSQL
    publish(records)      after a sync: new index here, new snapshot for the other replicas
                          (dropped if a ClearCache came in since its data began to be fetched)
    poll()                notices a newer snapshot version (or a ClearCache) from another replica

A fetch that fails leaves the best tier answering; ``upstream_error`` says why and searches
report it. Nothing here raises because Redis is down: the index keeps answering.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis.exceptions
import structlog

from services.catalog.netsuite import NetSuiteClient
from services.catalog.records import EntitySpec, Record, parse_row
from services.catalog.search import SearchIndex, build_index
from services.catalog.snapshot import EncodedChunks, SnapshotMeta, SnapshotStore
from services.catalog.store import CatalogStore, IncomingRecord
from shared.errors import Unavailable, UpstreamError
from shared.metrics import Metrics

__all__ = [
    "FILTERS", "REDIS_ERRORS", "SOURCE_NETSUITE", "SOURCE_POSTGRES", "SOURCE_REDIS",
    "EntityTiers", "PreparedPublish", "PublishTicket", "TierOptions", "parse_rows",
]

log = structlog.get_logger("catalog.tiers")

SOURCE_REDIS = "redis"
SOURCE_POSTGRES = "postgres"
SOURCE_NETSUITE = "netsuite"
FILTERS = {"customers": ("country", "industry"), "items": ("item_type",)}
# Redis being down or slow: the tier is skipped, never an error for callers.
REDIS_ERRORS = (OSError, TimeoutError, redis.exceptions.RedisError)


@dataclass(frozen=True)
class TierOptions:
    lease_seconds: float = 120.0
    upstream_retry_seconds: float = 30.0
    lease_poll_seconds: float = 0.2


def parse_rows(spec: EntitySpec, rows: list[dict[str, Any]], zone: ZoneInfo
               ) -> tuple[list[IncomingRecord], int]:
    """Rows as validated records, one per id (the last row of an id wins: NetSuite's newer
    answer, and the bulk write needs each id once); rows without a usable id are skipped
    (and counted)."""
    incoming: dict[int, IncomingRecord] = {}
    skipped = 0
    for row in rows:
        try:
            parsed = parse_row(spec, row, zone)
        except (KeyError, TypeError, ValueError):
            skipped += 1
            continue
        incoming[parsed.record["netsuite_id"]] = IncomingRecord(parsed.record, parsed.error)
    return list(incoming.values()), skipped


@dataclass(frozen=True)
class PublishTicket:
    """Where the cache stood when data began to be fetched. A ClearCache since then, on this
    replica or (the Redis generation) on another one, drops the publish of that data: what
    was asked to be cleared is not brought back by a fetch or sync that was already running.
    """

    clears: int
    generation: int | None  # None: Redis was unreachable, no check across replicas


@dataclass(frozen=True)
class PreparedPublish:
    """A data set ready to publish: its snapshot chunks and its index (its version is set
    when the snapshot is stored)."""

    chunks: EncodedChunks
    index: SearchIndex
    fetched_at: datetime
    ticket: PublishTicket


class EntityTiers:
    def __init__(
        self, spec: EntitySpec, *, store: CatalogStore, snapshots: SnapshotStore,
        client: NetSuiteClient, metrics: Metrics, options: TierOptions,
        spawn: Callable[[Awaitable[None], str], object],
    ) -> None:
        self.spec = spec
        self.store = store
        self.snapshots = snapshots
        self.client = client
        self.metrics = metrics
        self.options = options
        self._spawn = spawn
        self.index: SearchIndex | None = None
        self._loading: asyncio.Task[SearchIndex] | None = None
        self._fetching: asyncio.Task[SearchIndex] | None = None
        self.upstream_error = ""
        self.upstream_failed_at: float | None = None
        # Held while this replica publishes a data set (snapshot stored, index installed) and
        # while it follows Redis. A Redis poll that overlaps a publish saw either the snapshot
        # this replica is writing (following it would build the same index a second time) or
        # the one before it (following it would write this replica's data to Redis again): it
        # is skipped.
        self._changing = asyncio.Lock()
        self.publishes = 0  # publishes begun here: see follow()
        self._clears = 0  # ClearCaches seen here: see PublishTicket

    # -- reads -----------------------------------------------------------------------------------

    def current(self) -> SearchIndex | None:
        """The index, if this replica has one (no I/O): an index filled from PostgreSQL starts
        a background NetSuite fetch (stale-while-revalidate)."""
        index = self.index
        if index is not None and index.source == SOURCE_POSTGRES:
            self._revalidate()
        return index

    async def get_index(self) -> SearchIndex:
        index = self.current()
        if index is not None:
            return index
        self.metrics.cache_hit(f"index:{self.spec.name}", "miss")
        if self._loading is None or self._loading.done():
            self._loading = asyncio.create_task(self._cold_load(), name=f"load-{self.spec.name}")
        return await asyncio.shield(self._loading)

    @property
    def upstream_down(self) -> bool:
        return self.upstream_failed_at is not None

    async def _cold_load(self) -> SearchIndex:
        started = time.perf_counter()
        index = await self.load_from_redis()
        if index is not None:
            log.info("tier_loaded", entity=self.spec.name, tier=SOURCE_REDIS, records=len(index),
                     duration_s=round(time.perf_counter() - started, 3))
            return index
        log.info("tier_empty", entity=self.spec.name, tier=SOURCE_REDIS,
                 duration_s=round(time.perf_counter() - started, 3))
        index = await self.load_from_database()
        if index is None:
            log.info("tier_empty", entity=self.spec.name, tier=SOURCE_POSTGRES,
                     duration_s=round(time.perf_counter() - started, 3))
        else:
            log.info("tier_loaded", entity=self.spec.name, tier=SOURCE_POSTGRES,
                     records=len(index), duration_s=round(time.perf_counter() - started, 3))
            self._revalidate()
            return index
        index = await self.fetch_upstream()
        log.info("tier_loaded", entity=self.spec.name, tier=SOURCE_NETSUITE, records=len(index),
                 duration_s=round(time.perf_counter() - started, 3))
        return index

    async def _build(self, records: list[Record], version: int, source: str,
                     fetched_at: datetime | None) -> SearchIndex:
        return await asyncio.to_thread(
            build_index, self.spec, records, version=version, source=source,
            fetched_at=fetched_at, filters=FILTERS[self.spec.name],
        )

    def install(self, index: SearchIndex) -> None:
        self.index = index
        # The index is millions of long-lived objects: moved out of the collector's sight, a
        # full collection no longer walks them (that walk was the 100+ ms tail of searches).
        # Replaced indexes are still freed by reference counting.
        gc.freeze()
        self.metrics.cache_hit(f"index:{self.spec.name}", f"installed:{index.source}")

    async def load_from_redis(self) -> SearchIndex | None:
        try:
            found = await self.snapshots.read(self.spec)
        except REDIS_ERRORS as error:
            log.warning("redis_unavailable", entity=self.spec.name, error=type(error).__name__)
            return None
        if found is None:
            return None
        records, meta = found
        try:
            index = await self._build(records, meta.version, SOURCE_REDIS, meta.fetched_at)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            # rows of the right shape holding values of the wrong types (another writer of
            # these keys): no snapshot, as when it cannot be read at all
            log.warning("snapshot_unreadable", entity=self.spec.name, version=meta.version,
                        error=type(error).__name__, exc_info=True)
            return None
        self.install(index)
        return index

    async def load_from_database(self) -> SearchIndex | None:
        try:
            records, synced = await self.store.load(self.spec)
        except (OSError, TimeoutError) as error:
            log.warning("database_unavailable", entity=self.spec.name, error=type(error).__name__)
            return None
        except Exception as error:  # asyncpg errors: the tier is not usable now
            log.warning("database_unavailable", entity=self.spec.name, error=type(error).__name__)
            return None
        if not records:
            return None
        index = await self._build(records, 0, SOURCE_POSTGRES, synced)
        self.install(index)
        return index

    # -- the upstream fetch (single flight here, a lease across replicas) -------------------------

    def _revalidate(self) -> None:
        """Starts one background fetch, unless one runs or the last failed too recently."""
        if self._fetching is not None and not self._fetching.done():
            return
        failed = self.upstream_failed_at
        if failed is not None and time.monotonic() - failed < self.options.upstream_retry_seconds:
            return

        async def revalidate() -> None:
            try:
                await self.fetch_upstream()
            except Unavailable:
                pass  # recorded in upstream_error; the fallback tier keeps answering

        self._spawn(revalidate(), f"revalidate-{self.spec.name}")

    async def fetch_upstream(self) -> SearchIndex:
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.create_task(self._fetch_once(),
                                                 name=f"fetch-{self.spec.name}")
        return await asyncio.shield(self._fetching)

    async def _fetch_once(self) -> SearchIndex:
        token = uuid.uuid4().hex
        # a crashed holder's lease expires after lease_seconds: wait a little longer than that
        deadline = time.monotonic() + 2 * self.options.lease_seconds
        known = self.index.version if self.index is not None else 0
        while True:
            try:
                leased = await self.snapshots.acquire_lease(
                    self.spec, token, self.options.lease_seconds)
            except REDIS_ERRORS:
                leased = True  # no Redis, no lease: this replica fetches on its own
                token = ""
            if leased:
                break
            # another replica is fetching: wait for the snapshot it will write
            await asyncio.sleep(self.options.lease_poll_seconds)
            try:
                meta = await self.snapshots.meta(self.spec)
            except REDIS_ERRORS:
                meta = None
            if meta is not None and meta.version > known:
                index = await self.load_from_redis()
                if index is not None:
                    return index
            if time.monotonic() > deadline:
                raise Unavailable(f"NetSuite {self.spec.name}: another replica's fetch did not"
                                  " finish in time")
        try:
            return await self._fetch_and_store()
        finally:
            if token:
                try:
                    await self.snapshots.release_lease(self.spec, token)
                except REDIS_ERRORS:
                    pass

    async def _fetch_and_store(self) -> SearchIndex:
        started = time.perf_counter()
        ticket = await self.ticket()
        try:
            fetched = await self.client.fetch(self.spec)
        except UpstreamError as error:
            self.upstream_failed_at = time.monotonic()
            self.upstream_error = error.message
            log.warning("upstream_fetch_failed", entity=self.spec.name, error=error.message)
            if self.index is not None:
                return self.index
            raise Unavailable(
                f"NetSuite is unavailable and no tier holds {self.spec.name} yet"
            ) from None
        self.upstream_failed_at = None
        self.upstream_error = ""
        fetched_at = datetime.now(UTC)
        incoming, _ = await asyncio.to_thread(parse_rows, self.spec, fetched.rows,
                                              self.client.zone)
        records = [item.record for item in incoming if not item.error]
        prepared = await self.prepare(records, fetched_at, ticket, SOURCE_NETSUITE)
        await self.publish_prepared(prepared)  # dropped after a ClearCache: still answers
        index = prepared.index
        self._spawn(self._persist(incoming, fetched.complete), f"persist-{self.spec.name}")
        log.info("upstream_fetched", entity=self.spec.name, records=len(records),
                 duration_s=round(time.perf_counter() - started, 3))
        return index

    async def _persist(self, incoming: list[IncomingRecord], complete: bool) -> None:
        """Writes a fetched data set to PostgreSQL (the fallback tier) as a bulk delta; what
        it lacks is marked deleted only when the fetch was complete."""
        result = await self.store.apply(self.spec, incoming, delete_missing=complete)
        counts = result.counts
        log.info("fetch_persisted", entity=self.spec.name, created=counts.created,
                 updated=counts.updated, deleted=counts.deleted, failed=counts.failed,
                 duration_s=round(result.seconds, 3))

    async def ticket(self) -> PublishTicket:
        """Taken when data begins to be fetched, and handed to its publish: see
        :class:`PublishTicket`."""
        try:
            generation: int | None = await self.snapshots.generation()
        except REDIS_ERRORS:
            generation = None
        return PublishTicket(self._clears, generation)

    async def publish(self, records: list[Record], fetched_at: datetime, ticket: PublishTicket,
                      source: str = SOURCE_NETSUITE) -> bool:
        """A new data set: snapshot in Redis (other replicas follow), index here. False when
        it was dropped, a ClearCache having come in since ``ticket`` was taken."""
        return await self.publish_prepared(await self.prepare(records, fetched_at, ticket,
                                                              source))

    async def prepare(self, records: list[Record], fetched_at: datetime, ticket: PublishTicket,
                      source: str = SOURCE_NETSUITE) -> PreparedPublish:
        """The CPU work of a publish (the index and the snapshot's chunks, built in worker
        threads) with no effect yet: a sync prepares while PostgreSQL writes, and publishes
        once the write has committed."""
        chunks, index = await asyncio.gather(
            asyncio.to_thread(self.snapshots.encode, self.spec, records),
            self._build(records, 0, source, fetched_at),
        )
        return PreparedPublish(chunks, index, fetched_at, ticket)

    async def publish_prepared(self, prepared: PreparedPublish) -> bool:
        """Stores the snapshot and installs the index; False (nothing done) when a ClearCache
        came in since the data began to be fetched, here or on another replica."""
        self.publishes += 1
        index, ticket = prepared.index, prepared.ticket
        async with self._changing:
            if ticket.clears != self._clears:
                log.info("publish_dropped", entity=self.spec.name, reason="cache cleared")
                return False
            try:
                meta = await self.snapshots.store(self.spec, prepared.chunks, prepared.fetched_at,
                                                  ticket.generation)
                if meta is None:
                    log.info("publish_dropped", entity=self.spec.name,
                             reason="cache cleared by another replica")
                    return False
                index.version = meta.version
            except REDIS_ERRORS as error:
                log.warning("snapshot_write_failed", entity=self.spec.name,
                            error=type(error).__name__)
            self.install(index)
        if index.source == SOURCE_NETSUITE:  # NetSuite just answered (a fetch or a sync)
            self.upstream_failed_at, self.upstream_error = None, ""
        return True

    async def refresh_from_database(self, ticket: PublishTicket) -> bool:
        """After a sync: the full data set from PostgreSQL, published to every replica."""
        records, _ = await self.store.load(self.spec)
        return await self.publish(records, datetime.now(UTC), ticket, SOURCE_NETSUITE)

    async def apply_changes(self, changed: list[Record], removed: set[int],
                            ticket: PublishTicket) -> str:
        """After an incremental sync: the current data set with ``changed`` records put in and
        ``removed`` ids taken out, published to every replica. Done in memory when this
        replica's index is the latest snapshot and the result has as many records as
        PostgreSQL; otherwise the data set is read from PostgreSQL. Says which way it went
        (and if the publish was dropped: a ClearCache came in since ``ticket``)."""
        index = self.index
        latest = index is not None and index.source != SOURCE_POSTGRES
        if latest and index is not None:
            try:
                meta = await self.snapshots.meta(self.spec)
                latest = meta is None or meta.version == index.version
            except REDIS_ERRORS:
                pass  # no Redis: this replica's index is the newest data it knows
        if latest and index is not None:
            merged = {record["netsuite_id"]: record for record in index.records}
            for record in changed:
                merged[record["netsuite_id"]] = record
            for netsuite_id in removed:
                merged.pop(netsuite_id, None)
            live, failed = await self.store.counts(self.spec)
            if len(merged) == live - failed:
                published = await self.publish(list(merged.values()), datetime.now(UTC),
                                               ticket, SOURCE_NETSUITE)
                return "memory" if published else "memory, dropped: the cache was cleared"
            log.warning("merge_mismatch", entity=self.spec.name, merged=len(merged),
                        database=live - failed)
        published = await self.refresh_from_database(ticket)
        return "database" if published else "database, dropped: the cache was cleared"

    # -- following other replicas ------------------------------------------------------------------

    async def follow(self, meta: SnapshotMeta | None, publishes: int,
                     generation: int | None = None) -> None:
        """Loads the Redis snapshot when it holds newer data than this replica's index; writes
        this replica's data to Redis when it is newer (a sync ran while Redis was down).
        ``meta`` and ``generation`` are what Redis held when :attr:`publishes` was
        ``publishes``: if this replica has begun a publish since, the poll is stale and does
        nothing (the next one follows); if a ClearCache moved the generation on since, nothing
        is written back (the next poll drops the index)."""
        if publishes != self.publishes or self._changing.locked():
            return
        async with self._changing:
            await self._follow(meta, generation)

    async def _follow(self, meta: SnapshotMeta | None, generation: int | None) -> None:
        index = self.index
        if index is None or (meta is not None and meta.version == index.version):
            return
        if meta is not None and (index.fetched_at is None or meta.fetched_at > index.fetched_at):
            await self.load_from_redis()
        elif index.source != SOURCE_POSTGRES and index.fetched_at is not None and (
                meta is None or meta.fetched_at < index.fetched_at):
            written = await self.snapshots.write(self.spec, index.records, index.fetched_at,
                                                 generation)
            if written is not None:
                index.renumber(written.version)
                log.info("snapshot_republished", entity=self.spec.name, version=written.version)

    async def close(self) -> None:
        """Cancels a load or fetch in flight (at shutdown, before Redis and the pool close)."""
        tasks = [t for t in (self._loading, self._fetching) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def drop(self) -> None:
        """Forgets the index (ClearCache): the next search loads from the tiers again, and
        data fetched before now is not published."""
        self._clears += 1
        self.index = None
