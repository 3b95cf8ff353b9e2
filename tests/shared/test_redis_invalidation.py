"""shared.redis_invalidation with shared.readcache: caches fed by a real Redis's tracking
messages, including a change made during a load, a flush, a feed connection that is killed and
one whose PING goes unanswered. Each test has a private redis-server, so no other test
session's keys or flushes reach its feed (tracking messages name keys, not databases)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared.backends import EmbeddedRedis
from shared.readcache import UNCHANGED, Unchanged, Versioned, VersionedReadCache
from shared.redis_invalidation import RedisInvalidationFeed
from tests.feeds import running
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

PREFIX = "feed-test:"
WAIT = 10.0


def tag_of(key: str) -> str | None:
    """``feed-test:{name}`` names ``name``, except names starting with ``ignored``."""
    name = key.removeprefix(PREFIX)
    return None if name.startswith("ignored") else name


@pytest.fixture
async def redis(private_redis: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(private_redis.url, decode_responses=True)
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def feeding(url: str, *caches: VersionedReadCache[Any, Any],
                  **options: float) -> AsyncIterator[RedisInvalidationFeed]:
    """A feed of ``feed-test:`` keys for ``caches``, listening when this yields."""
    async with running(RedisInvalidationFeed(url, [PREFIX], tag_of, caches, **options)) as feed:
        yield feed


class Replica:
    """One replica's cache of ``feed-test:{name}`` values, counting its Redis reads (a value
    is its own version)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.cache: VersionedReadCache[str, str | None] = VersionedReadCache()
        self.reads = 0
        self.during_read: Callable[[], Awaitable[None]] | None = None

    async def get(self, name: str) -> str | None:
        async def load(held: Versioned[str | None] | None
                       ) -> Versioned[str | None] | Unchanged:
            self.reads += 1
            value = await self.redis.get(PREFIX + name)
            if self.during_read is not None:
                await self.during_read()
            if held is not None and held.version == value:
                return UNCHANGED
            return Versioned(value, value, (name,))

        return await self.cache.get(name, load)


async def test_a_fed_cache_answers_from_memory_until_its_key_changes(
    redis: aioredis.Redis, private_redis: EmbeddedRedis
) -> None:
    await redis.mset({PREFIX + "a": "a1", PREFIX + "b": "b1"})
    replica_a, replica_b = Replica(redis), Replica(redis)
    async with feeding(private_redis.url, replica_a.cache, replica_b.cache) as feed:
        for replica in (replica_a, replica_b):
            assert (await replica.get("a"), await replica.get("b")) == ("a1", "b1")
            assert (await replica.get("a"), await replica.get("b")) == ("a1", "b1")
            assert replica.reads == 2 and replica.cache.stats.trusted_hits == 2

        await redis.set(PREFIX + "ignored-1", "x")  # under the prefix, but no tag
        await redis.set("elsewhere:a", "x")  # not under the prefix: never sent
        await redis.set(PREFIX + "a", "a2")
        await wait_for(lambda: replica_a.cache.stats.notifications, WAIT)
        assert feed.messages == 2  # the ignored key's message, then a's
        for replica in (replica_a, replica_b):
            assert replica.cache.stats.notifications == 1
            assert await replica.get("a") == "a2" and replica.reads == 3
            assert await replica.get("b") == "b1" and replica.reads == 3  # b is still trusted
            assert await replica.get("a") == "a2" and replica.reads == 3  # a is trusted again

        await redis.delete(PREFIX + "b")
        await wait_for(lambda: replica_b.cache.stats.notifications == 2, WAIT)
        assert await replica_b.get("b") is None


async def test_a_value_changed_while_it_was_read_is_checked_again(
    redis: aioredis.Redis, private_redis: EmbeddedRedis
) -> None:
    await redis.set(PREFIX + "a", "a1")
    replica = Replica(redis)
    async with feeding(private_redis.url, replica.cache):
        async def change_after_the_read() -> None:
            replica.during_read = None
            await redis.set(PREFIX + "a", "a2")
            await wait_for(lambda: replica.cache.stats.notifications, WAIT)

        replica.during_read = change_after_the_read
        assert await replica.get("a") == "a1"  # read before the change
        assert await replica.get("a") == "a2" and replica.reads == 2
        assert await replica.get("a") == "a2" and replica.reads == 2


async def test_a_flush_invalidates_everything(
    redis: aioredis.Redis, private_redis: EmbeddedRedis
) -> None:
    await redis.mset({PREFIX + "a": "a1", PREFIX + "b": "b1"})
    replica = Replica(redis)
    async with feeding(private_redis.url, replica.cache):
        for _ in range(2):
            assert (await replica.get("a"), await replica.get("b")) == ("a1", "b1")
        assert replica.reads == 2
        await redis.flushdb()
        await wait_for(lambda: replica.cache.stats.notifications, WAIT)
        assert (await replica.get("a"), await replica.get("b")) == (None, None)
        assert replica.reads == 4


async def test_a_killed_feed_connection_puts_reads_back_to_checking_until_it_is_back(
    redis: aioredis.Redis, private_redis: EmbeddedRedis
) -> None:
    await redis.set(PREFIX + "a", "a1")
    replica = Replica(redis)
    async with feeding(private_redis.url, replica.cache, first_retry_delay=1.0) as feed:
        assert await replica.get("a") == "a1" and await replica.get("a") == "a1"
        assert replica.reads == 1
        first_id = feed.client_id
        assert await redis.execute_command("CLIENT", "KILL", "ID", first_id) == 1
        await wait_for(lambda: not feed.connected.is_set(), WAIT)
        assert not replica.cache.feed_connected

        assert await replica.get("a") == "a1" and await replica.get("a") == "a1"
        assert replica.reads == 3  # every read checks Redis while the feed is down
        await redis.set(PREFIX + "a", "a2")  # nobody hears of it
        assert await replica.get("a") == "a2" and replica.reads == 4

        await asyncio.wait_for(feed.connected.wait(), WAIT)
        assert feed.connects == 2 and feed.client_id != first_id
        assert await replica.get("a") == "a2" and replica.reads == 5  # checked once more
        assert await replica.get("a") == "a2" and replica.reads == 5
        await redis.set(PREFIX + "a", "a3")  # tracked again on the new connection
        await wait_for(lambda: replica.cache.stats.notifications, WAIT)
        assert await replica.get("a") == "a3" and replica.reads == 6


async def test_a_feed_whose_ping_goes_unanswered_gives_up_and_reconnects(
    redis: aioredis.Redis, private_redis: EmbeddedRedis
) -> None:
    replica = Replica(redis)
    async with feeding(private_redis.url, replica.cache, keepalive_seconds=0.2) as feed:
        await asyncio.sleep(0.5)  # quiet: PINGs answered, the feed stays
        assert feed.connects == 1 and feed.connected.is_set()
        await redis.execute_command("CLIENT", "PAUSE", 1500, "ALL")  # nothing is answered
        await wait_for(lambda: not feed.connected.is_set(), WAIT, every=0.02)
        assert not replica.cache.feed_connected
        await wait_for(lambda: feed.connects == 2 and feed.connected.is_set(), WAIT)
