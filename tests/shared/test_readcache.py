"""shared.readcache: the cache logic, and two replicas' caches over one real PostgreSQL table
whose version a writer bumps in the same transaction as the data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import asyncpg
import pytest

from shared.readcache import UNCHANGED, Unchanged, Versioned, VersionedReadCache
from tests.feeds import read_item, scratch_schema, versioned_items

SCHEMA = "readcache_test"


async def test_unchanged_answers_from_cache_and_changed_replaces() -> None:
    cache: VersionedReadCache[str, str] = VersionedReadCache(max_entries=4)
    seen: list[Versioned[str] | None] = []
    current = Versioned(1, "one")

    async def load(held: Versioned[str] | None) -> Versioned[str] | Unchanged:
        seen.append(held)
        return UNCHANGED if held is not None and held.version == current.version else current

    assert await cache.get("k", load) == "one"
    assert await cache.get("k", load) == "one"
    current = Versioned(2, "two")
    assert await cache.get("k", load) == "two"
    assert seen == [None, Versioned(1, "one"), Versioned(1, "one")]
    assert (cache.stats.hits, cache.stats.misses) == (1, 2)
    assert cache.held("k") == Versioned(2, "two")


async def test_least_recently_used_is_evicted() -> None:
    events: list[str] = []
    cache: VersionedReadCache[int, int] = VersionedReadCache(max_entries=2,
                                                            on_event=events.append)

    def loader(key: int):  # type: ignore[no-untyped-def]
        async def load(held: Versioned[int] | None) -> Versioned[int] | Unchanged:
            return UNCHANGED if held is not None else Versioned(0, key)
        return load

    for key in (1, 2, 1, 3):  # 1 is used again, so 2 is the least recently used
        await cache.get(key, loader(key))
    assert cache.held(2) is None and cache.held(1) is not None and cache.held(3) is not None
    assert len(cache) == 2 and cache.stats.evictions == 1
    assert events == ["miss", "miss", "hit", "miss"]


async def test_an_answer_without_a_version_is_not_held_nor_is_what_it_replaced() -> None:
    cache: VersionedReadCache[str, str] = VersionedReadCache(max_entries=2)
    answers = iter([Versioned(1, "one"), Versioned(None, "live"), Versioned(None, "live")])
    offered: list[Versioned[str] | None] = []

    async def load(held: Versioned[str] | None) -> Versioned[str] | Unchanged:
        offered.append(held)
        return next(answers)

    assert [await cache.get("k", load) for _ in range(3)] == ["one", "live", "live"]
    assert offered == [None, Versioned(1, "one"), None]
    assert cache.held("k") is None and len(cache) == 0


async def test_failing_loader_leaves_the_cache_alone() -> None:
    cache: VersionedReadCache[str, str] = VersionedReadCache()

    async def first(held: Versioned[str] | None) -> Versioned[str] | Unchanged:
        return Versioned(1, "one")

    async def broken(held: Versioned[str] | None) -> Versioned[str] | Unchanged:
        raise ConnectionError("database down")

    await cache.get("k", first)
    with pytest.raises(ConnectionError):
        await cache.get("k", broken)
    assert cache.held("k") == Versioned(1, "one")


async def test_unchanged_without_a_held_value_is_a_loader_bug() -> None:
    cache: VersionedReadCache[str, str] = VersionedReadCache()

    async def wrong(held: Versioned[str] | None) -> Versioned[str] | Unchanged:
        return UNCHANGED

    with pytest.raises(RuntimeError):
        await cache.get("k", wrong)


async def test_a_value_the_feed_named_is_not_offered_for_confirming() -> None:
    """Named since its load: it changed, so the loader is not asked to confirm it (held None);
    held from before a reconnect: nothing says it changed, so the loader may confirm it."""
    cache: VersionedReadCache[str, str] = VersionedReadCache()
    offered: list[Versioned[str] | None] = []

    async def load(held: Versioned[str] | None) -> Versioned[str] | Unchanged:
        offered.append(held)
        return UNCHANGED if held is not None else Versioned(1, "one", ("t",))

    cache.feed_up()
    await cache.get("k", load)
    await cache.get("k", load)  # trusted: no load
    cache.invalidate(["t"])
    await cache.get("k", load)
    cache.feed_down()
    cache.feed_up()
    await cache.get("k", load)
    assert offered == [None, None, Versioned(1, "one", ("t",))]
    assert (cache.stats.trusted_hits, cache.stats.misses, cache.stats.hits) == (1, 2, 1)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with scratch_schema(database_url, SCHEMA, versioned_items(SCHEMA)) as pool:
        yield pool


def conditional_load(pool: asyncpg.Pool, key: str):  # type: ignore[no-untyped-def]
    return partial(read_item, pool, key)


async def test_two_replicas_see_a_committed_write_on_their_next_read(pool: asyncpg.Pool) -> None:
    replica_a: VersionedReadCache[str, str] = VersionedReadCache()
    replica_b: VersionedReadCache[str, str] = VersionedReadCache()
    await pool.execute("INSERT INTO items VALUES ('k', 'old', nextval('versions'))")
    for replica in (replica_a, replica_b):
        assert await replica.get("k", conditional_load(pool, "k")) == "old"
        assert await replica.get("k", conditional_load(pool, "k")) == "old"  # a hit
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "UPDATE items SET value = 'new', version = nextval('versions') WHERE key = 'k'")
        # not committed yet: both replicas still answer the committed state
        assert await replica_a.get("k", conditional_load(pool, "k")) == "old"
    for replica in (replica_a, replica_b):
        assert await replica.get("k", conditional_load(pool, "k")) == "new"
        assert replica.stats.hits >= 1


def test_without_a_feed_invalidations_are_counted_but_not_recorded() -> None:
    """A write invalidates its replica's cache whether or not a feed is up (timeentries): with
    none up, nothing held is trusted anyway, so no tag is kept (it would only pile up)."""
    cache: VersionedReadCache[str, str] = VersionedReadCache()
    for n in range(1000):
        cache.invalidate([f"user-{n}"])
    assert cache.stats.notifications == 1000 and not cache._notified
    cache.feed_up()
    cache.invalidate(["user-1"])
    assert list(cache._notified) == ["user-1"]
