"""shared.invalidation with shared.readcache: replicas' caches fed by real PostgreSQL
notifications from a trigger, including a change committed during a load and a feed that
loses its connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from shared.readcache import UNCHANGED, Unchanged, Versioned, VersionedReadCache
from tests.feeds import feeding, read_item, scratch_schema, versioned_items
from tests.waiting import wait_for

SCHEMA = "invalidation_test"
CHANNEL = "invalidation_test_changed"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with scratch_schema(database_url, SCHEMA, versioned_items(SCHEMA) + f"""
        CREATE FUNCTION {SCHEMA}.notify_item() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('{CHANNEL}', NEW.key); RETURN NULL; END $$;
        CREATE TRIGGER items_changed AFTER INSERT OR UPDATE ON {SCHEMA}.items
            FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.notify_item();
        INSERT INTO {SCHEMA}.items VALUES ('a', 'a1', nextval('{SCHEMA}.versions')),
                                          ('b', 'b1', nextval('{SCHEMA}.versions'));
    """, pool_size=3) as pool:
        yield pool


class Replica:
    """One replica's cache over ``items``, counting its database reads."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.cache: VersionedReadCache[str, str] = VersionedReadCache()
        self.reads = 0
        self.during_read: Callable[[], Awaitable[None]] | None = None

    async def get(self, key: str) -> str:
        async def load(held: Versioned[str] | None) -> Versioned[str] | Unchanged:
            self.reads += 1
            loaded = await read_item(self.pool, key, held, (key,))
            if self.during_read is not None:
                await self.during_read()
            return loaded

        return await self.cache.get(key, load)


async def update(pool: asyncpg.Pool, key: str, value: str) -> None:
    await pool.execute("UPDATE items SET value = $2, version = nextval('versions')"
                       " WHERE key = $1", key, value)


async def test_a_fed_cache_answers_from_memory_until_a_commit_names_the_key(
    pool: asyncpg.Pool, database_url: str
) -> None:
    replica_a, replica_b = Replica(pool), Replica(pool)
    async with feeding(database_url, CHANNEL, replica_a.cache, replica_b.cache):
        for replica in (replica_a, replica_b):
            assert await replica.get("a") == "a1" and await replica.get("b") == "b1"
            assert await replica.get("a") == "a1" and await replica.get("b") == "b1"
            assert replica.reads == 2  # the second round came from memory
            assert replica.cache.stats.trusted_hits == 2
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("UPDATE items SET value = 'a2',"
                                     " version = nextval('versions') WHERE key = 'a'")
            await asyncio.sleep(0.05)  # not committed: nothing is notified
            assert replica_a.cache.stats.notifications == 0
            assert await replica_a.get("a") == "a1"
            assert replica_a.reads == 2  # from memory: no database read saw the old row
        for replica in (replica_a, replica_b):
            await wait_for(lambda r=replica: r.cache.stats.notifications == 1, what="notified")
            assert await replica.get("a") == "a2"  # checked against the database: new
            assert await replica.get("b") == "b1"  # not named: still from memory
            assert replica.reads == 3
            assert await replica.get("a") == "a2" and replica.reads == 3  # trusted again


async def test_a_change_committed_during_a_load_is_not_trusted(
    pool: asyncpg.Pool, database_url: str
) -> None:
    replica = Replica(pool)
    async with feeding(database_url, CHANNEL, replica.cache):

        async def commit_a_change_and_see_it_notified() -> None:
            replica.during_read = None
            await update(pool, "a", "a2")
            await wait_for(lambda: replica.cache.stats.notifications == 1, what="notified")

        replica.during_read = commit_a_change_and_see_it_notified
        assert await replica.get("a") == "a1"  # read before the change committed
        assert await replica.get("a") == "a2"  # so it was checked again, not trusted
        assert replica.reads == 2


async def test_without_a_feed_or_tags_every_read_checks(
    pool: asyncpg.Pool, database_url: str
) -> None:
    unfed = Replica(pool)
    assert await unfed.get("a") == "a1" and await unfed.get("a") == "a1"
    assert unfed.reads == 2 and unfed.cache.stats.hits == 1

    untagged: VersionedReadCache[str, str] = VersionedReadCache()
    reads = 0

    async def load(held: Versioned[str] | None) -> Versioned[str] | Unchanged:
        nonlocal reads
        reads += 1
        return UNCHANGED if held is not None else Versioned(1, "value")

    async with feeding(database_url, CHANNEL, untagged):
        await untagged.get("k", load)
        await untagged.get("k", load)
    assert reads == 2


async def test_a_lost_feed_makes_every_read_check_until_it_listens_again(
    pool: asyncpg.Pool, database_url: str
) -> None:
    replica = Replica(pool)
    async with feeding(database_url, CHANNEL, replica.cache, first_retry_delay=1.0) as feed:
        assert await replica.get("a") == "a1" and await replica.get("a") == "a1"
        assert replica.reads == 1
        await pool.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE application_name = $1", feed.application_name)
        await wait_for(lambda: not replica.cache.feed_connected,
                       what="the cache knows the feed is down")
        await update(pool, "a", "a2")  # committed while nobody listens: never notified
        assert await replica.get("a") == "a2"
        assert await replica.get("a") == "a2"
        assert replica.reads == 3  # down: each read checks
        await wait_for(lambda: feed.connects == 2 and replica.cache.feed_connected,
                       what="reconnected")
        assert await replica.get("a") == "a2" and replica.reads == 4  # held from before: checked
        assert await replica.get("a") == "a2" and replica.reads == 4  # loaded while up: trusted


async def test_caught_up_waits_for_every_earlier_commit_to_reach_the_caches(
    pool: asyncpg.Pool, database_url: str
) -> None:
    replica = Replica(pool)
    async with feeding(database_url, CHANNEL, replica.cache) as feed:
        assert await replica.get("a") == "a1"
        for number in range(20):
            await update(pool, "a", f"a{number + 2}")
        assert await feed.caught_up()
        assert replica.cache.stats.notifications == 20  # markers are not changes
        assert await replica.get("a") == "a21"
    assert not await feed.caught_up()  # stopped: nothing to wait for
