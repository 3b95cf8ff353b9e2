"""The list cache fed by Redis tracking (server.py ``feed_list_cache``): a held answer costs no
Redis command while the feed is up; another replica's write is seen once its invalidation has
arrived; a killed feed connection puts reads back to one GET each until it is back; a flush
drops every held answer; a replica's own write is seen by its next read at once.

Each test has a redis-server of its own: its command counts are this test's alone, and no
other test session's keys or flushes reach the feeds (tracking messages name keys, not
databases). Replicas are built as server.py builds the service's, over a running service's
backends, and their handlers are called directly as the user."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from syncsuite.timeentries.v1 import timeentries_service_pb2 as pb

from services.timeentries.sandbox import sandbox_email
from services.timeentries.server import SERVICE, create_servicer, feed_list_cache
from services.timeentries.settings import TimeEntriesSettings
from shared.auth import Principal, current_principal
from shared.backends import EmbeddedRedis
from shared.config import load
from shared.redis_invalidation import RedisInvalidationFeed
from shared.server import RunningService, running_service
from tests.timeentries.conftest import Caller, Zoho, fast_env, sync_projects
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(90)

DAVE = sandbox_email(8)
WAIT = 10.0
NOT_COUNTED = {"cmdstat_info", "cmdstat_ping"}  # the counting itself; the feeds' keep-alives


def day(offset: int = 0) -> str:
    return (datetime.now(UTC).date() - timedelta(days=offset)).isoformat()


@contextlib.contextmanager
def as_user(email: str) -> Iterator[None]:
    token = current_principal.set(Principal("user", subject=email, email=email))
    try:
        yield
    finally:
        current_principal.reset(token)


class Replica:
    """A replica of the service over ``running``'s PostgreSQL and Redis, built by server.py's
    own functions; ``feed=False`` leaves its list cache's feed to the test."""

    def __init__(self, running: RunningService, *, feed: bool = True,
                 **feed_options: float) -> None:
        runtime = running.runtime
        self.servicer = create_servicer(runtime, load(TimeEntriesSettings, runtime.environ))
        self.cache = self.servicer.list_cache
        self.feed: RedisInvalidationFeed | None = (
            feed_list_cache(runtime, self.servicer, **feed_options) if feed else None)

    async def list(self, email: str) -> list[tuple[str, int, int]]:
        """The user's default range: (entry id, minutes, version) of each entry."""
        with as_user(email):
            reply = pb.ListTimeEntriesResponse.FromString(
                await self.servicer.ListTimeEntries(pb.ListTimeEntriesRequest(), None))
        return [(e.entry_id, e.duration_minutes, e.version) for e in reply.entries]

    async def warm_list(self, email: str) -> list[tuple[str, int, int]]:
        """Lists until an answer comes from memory (a user's first reads prove the index,
        which sets a new data token, and the feed's news of it untrusts the answer once)."""
        for _ in range(6):
            trusted = self.cache.stats.trusted_hits
            listed = await self.list(email)
            if self.cache.stats.trusted_hits == trusted + 1:
                return listed
        raise AssertionError("no answer came from memory")

    async def create(self, email: str, project: str, minutes: int) -> pb.TimeEntry:
        with as_user(email):
            reply = await self.servicer.CreateTimeEntry(pb.CreateTimeEntryRequest(
                project_id=project, date=day(1), duration_minutes=minutes,
                description="same replica"), None)
        entry: pb.TimeEntry = reply.entry
        return entry

    async def update(self, email: str, entry: pb.TimeEntry, minutes: int) -> pb.TimeEntry:
        with as_user(email):
            reply = await self.servicer.UpdateTimeEntry(pb.UpdateTimeEntryRequest(
                entry_id=entry.entry_id, version=entry.version, duration_minutes=minutes), None)
        updated: pb.TimeEntry = reply.entry
        return updated


async def commands_during(redis: aioredis.Redis, action: Callable[[], Awaitable[Any]]
                          ) -> dict[str, int]:
    """The commands the Redis server ran during ``action`` (calls per command)."""

    async def calls() -> dict[str, int]:
        stats = await redis.info("commandstats")
        return {name: value["calls"] for name, value in stats.items()
                if name not in NOT_COUNTED}

    before = await calls()
    await action()
    after = await calls()
    return {name.removeprefix("cmdstat_"): count - before.get(name, 0)
            for name, count in after.items() if count != before.get(name, 0)}


async def shows(replica: Replica, expected: list[tuple[str, int, int]]) -> bool:
    return await replica.list(DAVE) == expected


async def list_times(replica: Replica, email: str, times: int) -> None:
    first = await replica.list(email)
    for _ in range(times - 1):
        assert await replica.list(email) == first


@pytest.fixture
async def redis(private_redis: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(private_redis.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def service(
    service_env: dict[str, str], zoho: Zoho, clean_state: None,
    private_redis: EmbeddedRedis,
) -> AsyncIterator[RunningService]:
    """The service on the test's own Redis, no sink workers (Redis hears only the test)."""
    env = fast_env(service_env, zoho.url, REDIS_URL=private_redis.url,
                   TIMEENTRIES_INPROCESS_WORKERS="false")
    async with running_service(SERVICE, env) as running:
        await sync_projects(running)
        yield running


@pytest.fixture
async def writer(service: RunningService) -> AsyncIterator[Caller]:
    """DAVE, calling the service: another replica than the tests' own."""
    async with grpc.aio.insecure_channel(service.address) as channel:
        yield Caller(channel, DAVE)


@pytest.fixture
def project(zoho: Zoho) -> str:
    return sorted(zoho.state.projects_of(DAVE))[0]


async def test_a_held_answer_is_served_with_no_redis_command(
    service: RunningService, writer: Caller, project: str, redis: aioredis.Redis
) -> None:
    for offset in range(3):
        await writer.create(project, day(offset), 30 + offset)
    replica = Replica(service)
    assert len(await replica.warm_list(DAVE)) == 3
    trusted = replica.cache.stats.trusted_hits
    assert await commands_during(redis, lambda: list_times(replica, DAVE, 20)) == {}
    assert replica.cache.stats.trusted_hits == trusted + 20

    replica.cache.feed_down()  # as without the feed: each held answer is confirmed by a GET
    assert await commands_during(redis, lambda: list_times(replica, DAVE, 5)) == {"get": 5}


async def test_a_write_through_another_replica_is_seen_once_its_invalidation_arrives(
    service: RunningService, writer: Caller, project: str
) -> None:
    replica = Replica(service)
    assert await replica.warm_list(DAVE) == []

    created = await writer.create(project, day(2), 30)
    await wait_for(lambda: shows(replica, [(created.entry_id, 30, 1)]), WAIT, every=0.01)
    await replica.warm_list(DAVE)

    await writer.stub.UpdateTimeEntry(pb.UpdateTimeEntryRequest(
        entry_id=created.entry_id, version=1, duration_minutes=75),
        metadata=writer.metadata, timeout=10)
    await wait_for(lambda: shows(replica, [(created.entry_id, 75, 2)]), WAIT, every=0.01)
    await replica.warm_list(DAVE)

    await writer.stub.DeleteTimeEntry(pb.DeleteTimeEntryRequest(
        entry_id=created.entry_id, version=2), metadata=writer.metadata, timeout=10)
    await wait_for(lambda: shows(replica, []), WAIT, every=0.01)


async def test_a_killed_feed_connection_puts_reads_back_to_one_get_until_it_is_back(
    service: RunningService, writer: Caller, project: str, redis: aioredis.Redis
) -> None:
    first = await writer.create(project, day(1), 30)
    replica = Replica(service, first_retry_delay=2.0)
    assert replica.feed is not None
    feed = replica.feed
    await wait_for(feed.connected.is_set, WAIT)
    await replica.warm_list(DAVE)
    assert await redis.execute_command("CLIENT", "KILL", "ID", feed.client_id) == 1
    await wait_for(lambda: not feed.connected.is_set(), WAIT, every=0.01)

    assert await commands_during(redis, lambda: list_times(replica, DAVE, 3)) == {"get": 3}
    second = await writer.create(project, day(2), 45)  # nobody tracks it for the replica
    assert [e[0] for e in await replica.list(DAVE)] == [second.entry_id, first.entry_id]

    await wait_for(feed.connected.is_set, WAIT)
    assert feed.connects == 2
    assert await commands_during(redis, lambda: replica.list(DAVE)) == {"get": 1}
    assert await commands_during(redis, lambda: list_times(replica, DAVE, 3)) == {}
    third = await writer.create(project, day(3), 60)  # tracked again
    await wait_for(lambda: shows(replica, [(third.entry_id, 60, 1), (second.entry_id, 45, 1),
                                           (first.entry_id, 30, 1)]), WAIT, every=0.01)


async def test_a_flushed_redis_drops_every_held_answer(
    service: RunningService, writer: Caller, project: str, redis: aioredis.Redis
) -> None:
    await writer.create(project, day(1), 30)  # in Redis only: no sink workers run
    replica = Replica(service)
    assert len(await replica.warm_list(DAVE)) == 1
    await redis.flushdb()
    # PostgreSQL answers now, and it never received the entry
    await wait_for(lambda: shows(replica, []), WAIT, every=0.01)


async def test_a_write_is_seen_by_the_next_list_on_the_same_replica(
    service: RunningService, writer: Caller, project: str
) -> None:
    """The replica's feed is up but delivers nothing (Redis's message still on its way): its
    own writes must be seen anyway; another replica's are not, until a message comes."""
    replica = Replica(service, feed=False)
    replica.cache.feed_up()
    assert await replica.warm_list(DAVE) == []

    created = await replica.create(DAVE, project, 30)
    assert await replica.list(DAVE) == [(created.entry_id, 30, 1)]
    await replica.warm_list(DAVE)
    updated = await replica.update(DAVE, created, 50)
    assert await replica.list(DAVE) == [(created.entry_id, 50, 2)]
    await replica.warm_list(DAVE)
    with as_user(DAVE):
        await replica.servicer.DeleteTimeEntry(pb.DeleteTimeEntryRequest(
            entry_id=created.entry_id, version=updated.version), None)
    assert await replica.list(DAVE) == []

    await replica.warm_list(DAVE)
    await writer.create(project, day(2), 15)
    assert await replica.list(DAVE) == []  # held: the invalidation it waits for never comes
    replica.cache.invalidate([DAVE])  # which is what the feed would do
    assert len(await replica.list(DAVE)) == 1
