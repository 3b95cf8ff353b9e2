"""The Redis tier's snapshot (chunks of JSON rows under a versioned meta), and a replica's own
publish not being followed back from Redis while it runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.catalog.records import CUSTOMERS, Record
from services.catalog.snapshot import OLD_CHUNKS_GRACE_SECONDS, SnapshotStore
from services.catalog.tiers import EntityTiers, TierOptions
from shared.metrics import Metrics


def customers(count: int) -> list[Record]:
    return [{name: (n if name == "netsuite_id" else f"{name} of {n} ü")
             for name in CUSTOMERS.fields} for n in range(1, count + 1)]


@pytest.fixture
async def redis(redis_url: str, clean: None) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


def tiers_on(snapshots: SnapshotStore) -> EntityTiers:
    """The tiers of customers with Redis only (what publishing and following use)."""
    return EntityTiers(
        CUSTOMERS, store=None, snapshots=snapshots, client=None,  # type: ignore[arg-type]
        metrics=Metrics("test"), options=TierOptions(),
        spawn=lambda coroutine, name: asyncio.ensure_future(coroutine),
    )


async def test_a_snapshot_is_chunks_of_json_rows_of_about_the_chunk_size(
    redis: aioredis.Redis,
) -> None:
    store = SnapshotStore(redis, chunk_bytes=20_000, ttl_seconds=600)
    records = customers(1000)
    meta = await store.write(CUSTOMERS, records, datetime.now(UTC))

    bodies = await redis.mget([store.chunk_key(CUSTOMERS, meta.version, n)
                               for n in range(meta.chunks)])
    assert meta.chunks == len(bodies) > 5
    assert meta.bytes == sum(len(body) for body in bodies)
    rows = [row for body in bodies for row in json.loads(body)]  # each chunk on its own
    assert len(rows) == meta.total == 1000
    assert all(10_000 < len(body) < 30_000 for body in bodies[:-1])
    found = await store.read(CUSTOMERS)
    assert found is not None
    assert found[0] == records


async def test_a_new_version_leaves_the_old_chunks_a_grace_period(
    redis: aioredis.Redis,
) -> None:
    store = SnapshotStore(redis, chunk_bytes=20_000, ttl_seconds=600)
    first = await store.write(CUSTOMERS, customers(300), datetime.now(UTC))
    second = await store.write(CUSTOMERS, customers(200), datetime.now(UTC))

    assert second.version > first.version
    for n in range(first.chunks):
        assert 0 < await redis.ttl(store.chunk_key(CUSTOMERS, first.version, n)) \
            <= OLD_CHUNKS_GRACE_SECONDS
    assert await redis.ttl(store.chunk_key(CUSTOMERS, second.version, 0)) > 500
    found = await store.read(CUSTOMERS)
    assert found is not None and len(found[0]) == 200


async def test_an_empty_data_set_is_one_empty_chunk(redis: aioredis.Redis) -> None:
    store = SnapshotStore(redis, chunk_bytes=20_000, ttl_seconds=600)
    meta = await store.write(CUSTOMERS, [], datetime.now(UTC))
    assert (meta.chunks, meta.total) == (1, 0)
    assert await store.read(CUSTOMERS) == ([], meta)


async def test_a_poll_overlapping_this_replicas_publish_is_not_followed(
    redis: aioredis.Redis,
) -> None:
    """Redis polled mid-publish holds the snapshot being published (following it would build
    the same index twice) or the one before (following it would write the data again)."""
    snapshots = SnapshotStore(redis, chunk_bytes=200_000, ttl_seconds=600)
    tiers = tiers_on(snapshots)
    assert await tiers.publish(customers(2000), datetime.now(UTC), await tiers.ticket())
    loads_from_redis = 0
    load = tiers.load_from_redis

    async def counted_load() -> object:
        nonlocal loads_from_redis
        loads_from_redis += 1
        return await load()

    tiers.load_from_redis = counted_load  # type: ignore[method-assign]

    # a poll read before a publish, followed after it
    polled = (tiers.publishes, await snapshots.meta(CUSTOMERS))
    assert await tiers.publish(customers(2100), datetime.now(UTC), await tiers.ticket())
    assert tiers.index is not None
    published = tiers.index.version
    await tiers.follow(polled[1], polled[0])
    meta = await snapshots.meta(CUSTOMERS)
    assert meta is not None and meta.version == published and meta.total == 2100

    # a poll read while a publish runs (its snapshot stored, its index not yet installed):
    # the publish is held right after storing, until the poll has been followed
    stored, release = asyncio.Event(), asyncio.Event()
    store = snapshots.store

    async def held_store(*args: Any) -> object:
        meta = await store(*args)
        stored.set()
        await release.wait()
        return meta

    snapshots.store = held_store  # type: ignore[method-assign]
    publishing = asyncio.create_task(
        tiers.publish(customers(2500), datetime.now(UTC), await tiers.ticket()))
    await asyncio.wait_for(stored.wait(), timeout=10)
    polled_meta = await snapshots.meta(CUSTOMERS)
    assert polled_meta is not None and polled_meta.total == 2500
    # skipped at once (waiting for the publish's lock would wait for ever here)
    await asyncio.wait_for(tiers.follow(polled_meta, tiers.publishes), timeout=5)
    assert loads_from_redis == 0  # not followed: the index would have been built twice
    assert (await snapshots.meta(CUSTOMERS)) == polled_meta  # and nothing written again
    release.set()
    snapshots.store = store  # type: ignore[method-assign]
    assert await asyncio.wait_for(publishing, timeout=30)
    index = tiers.index
    meta = await snapshots.meta(CUSTOMERS)
    assert index is not None and meta is not None
    assert meta.version == index.version and meta.total == 2500 and loads_from_redis == 0

    # a poll after the publish is followed as ever: another replica's newer snapshot
    await snapshots.write(CUSTOMERS, customers(2600), datetime.now(UTC))
    await tiers.follow(await snapshots.meta(CUSTOMERS), tiers.publishes)
    assert loads_from_redis == 1 and tiers.index is not None and len(tiers.index) == 2600


async def test_a_poll_does_not_write_back_data_a_clear_cache_removed_since(
    redis: aioredis.Redis,
) -> None:
    """A replica with newer data than Redis writes it back on its poll (a sync ran while Redis
    was down), unless a ClearCache came in after the poll read the generation."""
    snapshots = SnapshotStore(redis, chunk_bytes=200_000, ttl_seconds=600)
    tiers = tiers_on(snapshots)
    assert await tiers.publish(customers(100), datetime.now(UTC), await tiers.ticket())
    await snapshots.clear(CUSTOMERS)  # Redis lost the snapshot: the poll would write it back

    polled = (tiers.publishes, await snapshots.generation())
    await snapshots.next_generation()  # a ClearCache elsewhere, after the poll's read
    await tiers.follow(None, polled[0], polled[1])
    assert await snapshots.meta(CUSTOMERS) is None

    await tiers.follow(None, tiers.publishes, await snapshots.generation())
    meta = await snapshots.meta(CUSTOMERS)
    assert meta is not None and meta.total == 100  # without a clear since: written back


async def test_data_fetched_before_a_clear_cache_is_not_published_after_it(
    redis: aioredis.Redis,
) -> None:
    """A fetch or sync already running at a ClearCache (here, or on another replica: the
    Redis generation) does not bring back what was cleared."""
    snapshots = SnapshotStore(redis, chunk_bytes=200_000, ttl_seconds=600)
    tiers = tiers_on(snapshots)
    assert await tiers.publish(customers(100), datetime.now(UTC), await tiers.ticket())

    # cleared here while the data was on its way
    ticket = await tiers.ticket()
    await snapshots.next_generation()
    await snapshots.clear(CUSTOMERS)
    tiers.drop()
    assert not await tiers.publish(customers(120), datetime.now(UTC), ticket)
    assert tiers.index is None and await snapshots.meta(CUSTOMERS) is None

    # cleared by another replica, before this one noticed
    assert await tiers.publish(customers(130), datetime.now(UTC), await tiers.ticket())
    ticket = await tiers.ticket()
    await snapshots.next_generation()
    await snapshots.clear(CUSTOMERS)
    assert not await tiers.publish(customers(140), datetime.now(UTC), ticket)
    assert await snapshots.meta(CUSTOMERS) is None
    assert await redis.keys("netsuite:customers:*:*") == []  # its chunks were taken back

    # data fetched after the clear is published as ever
    assert await tiers.publish(customers(150), datetime.now(UTC), await tiers.ticket())
    meta = await snapshots.meta(CUSTOMERS)
    assert meta is not None and meta.total == 150
    assert tiers.index is not None and tiers.index.version == meta.version


async def test_text_the_fast_encoder_refuses_still_round_trips(redis: aioredis.Redis) -> None:
    """A lone surrogate (JSON from upstream may carry one, escaped) and an integer beyond 64
    bits go through the standard library's encoder; a chunk an older replica wrote with the
    standard library (non-ASCII escaped) reads the same."""
    store = SnapshotStore(redis, chunk_bytes=20_000, ttl_seconds=600)
    records = customers(3)
    records[1]["company_name"] = "half a pair \ud800 here"
    records[2]["netsuite_id"] = 2 ** 70
    meta = await store.write(CUSTOMERS, records, datetime.now(UTC))
    found = await store.read(CUSTOMERS)
    assert found is not None and found[0] == records

    rows = [[record.get(name) for name in CUSTOMERS.fields] for record in customers(2)]
    await redis.set(store.chunk_key(CUSTOMERS, meta.version, 0), json.dumps(rows))
    await redis.set(store.meta_key(CUSTOMERS), replace(meta, chunks=1, total=2).as_json())
    found = await store.read(CUSTOMERS)
    assert found is not None and found[0] == customers(2)


_META = '{"version": 1, "chunks": %d, "total": 5, "fields": [], "fetched_at": "%s"}'


@pytest.mark.parametrize("meta", [
    "not json", '{"version": 3}', "[1, 2]", '"text"',
    _META % (0, "2024-01-01T00:00:00+00:00"), _META % (1, "2024-01-01T00:00:00"),
], ids=["not-json", "foreign-object", "list", "string", "no-chunks", "naive-time"])
async def test_an_unreadable_meta_is_no_snapshot_until_the_next_write_replaces_it(
    redis: aioredis.Redis, meta: str
) -> None:
    store = SnapshotStore(redis, chunk_bytes=20_000, ttl_seconds=600)
    await redis.set(store.meta_key(CUSTOMERS), meta)
    assert await store.meta(CUSTOMERS) is None and await store.read(CUSTOMERS) is None
    written = await store.write(CUSTOMERS, customers(3), datetime.now(UTC))
    assert await store.read(CUSTOMERS) == (customers(3), written)


async def test_another_programs_value_under_the_meta_key_is_no_snapshot(
    redis: aioredis.Redis,
) -> None:
    store = SnapshotStore(redis, chunk_bytes=20_000, ttl_seconds=600)
    await redis.hset(store.meta_key(CUSTOMERS), mapping={"version": "1"})  # WRONGTYPE for GET
    assert await store.meta(CUSTOMERS) is None
    assert await store.write(CUSTOMERS, customers(2), datetime.now(UTC)) is not None
    assert await store.meta(CUSTOMERS) is not None


@pytest.mark.parametrize("chunk", ["garbage", '{"a": 1}', "[[1, 2]]", "[]", "[7]"],
                         ids=["not-json", "object", "short-rows", "missing-rows", "not-rows"])
async def test_an_unreadable_chunk_is_no_snapshot(redis: aioredis.Redis, chunk: str) -> None:
    store = SnapshotStore(redis, chunk_bytes=20_000, ttl_seconds=600)
    meta = await store.write(CUSTOMERS, customers(3), datetime.now(UTC))
    await redis.set(store.chunk_key(CUSTOMERS, meta.version, 0), chunk)
    assert await store.read(CUSTOMERS) is None


async def test_rows_of_the_wrong_types_are_no_snapshot_to_load(redis: aioredis.Redis) -> None:
    """Rows of the right shape whose values the index cannot take (another writer of these
    keys): the replica loads from the next tier instead of failing."""
    snapshots = SnapshotStore(redis, chunk_bytes=20_000, ttl_seconds=600)
    records = customers(3)
    for record in records:
        record["company_name"] = 42
    await snapshots.write(CUSTOMERS, records, datetime.now(UTC))
    tiers = tiers_on(snapshots)
    assert await tiers.load_from_redis() is None and tiers.index is None
