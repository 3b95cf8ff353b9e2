"""Each replica keeps the ListTimeEntries answers of hot ranges, stamped with the user's data
token in Redis; every change a list can show sets a new token, and Redis tells every replica
that the token changed (tracking, test_list_cache_feed.py), so a warm cache on any replica shows
a change made through another one as soon as that message has arrived."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from syncsuite.timeentries.v1 import timeentries_service_pb2 as pb

from services.timeentries import hot_store
from services.timeentries.hot_store import (
    INDEX_COMPLETE,
    HotStore,
    by_date_key,
    data_token_key,
    entry_key,
    projects_key,
    unsynced_key,
)
from services.timeentries.model import Entry
from services.timeentries.sandbox import sandbox_email
from services.timeentries.server import SERVICE
from shared.lua import RedisPyRunner, RedisRunner
from shared.pipelined_redis import PipelinedRedis
from shared.server import RunningService, running_service
from tests.timeentries.conftest import (
    Caller,
    Zoho,
    backlog_drained,
    fast_env,
    sync_projects,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(90)

CAROL = sandbox_email(7)
TTL = 31 * 86400


def today() -> date:
    return datetime.now(UTC).date()


def day(offset: int = 0) -> str:
    return (today() - timedelta(days=offset)).isoformat()


def cache_hits(running: RunningService) -> float:
    """How many ListTimeEntries answers this replica took from its cache (its metric)."""
    return running.runtime.metrics.registry.get_sample_value(
        "syncsuite_cache_events_total", {"cache": "timeentries_list", "result": "hit"}) or 0.0


@pytest.fixture
async def redis(redis_url: str, clean_state: None) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(params=["pipelined", "redis-py"])
async def runner(
    request: pytest.FixtureRequest, redis: aioredis.Redis, redis_url: str
) -> AsyncIterator[RedisRunner]:
    """What sends the store's scripts and commands: the service's pipelined connection, or
    redis-py."""
    if request.param == "redis-py":
        yield RedisPyRunner(redis)
        return
    pipelined = PipelinedRedis(redis_url)
    yield pipelined
    await pipelined.aclose()


async def test_a_batch_of_sink_marks_is_one_script_per_chunk_with_each_entry_judged_alone(
    redis: aioredis.Redis, runner: RedisRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mark_synced as the workers call it: entries of several users, one of them changed
    since the sink read it, one whose hash is gone; chunks of MARK_CHUNK entries."""
    monkeypatch.setattr(hot_store, "MARK_CHUNK", 2)
    hot = HotStore(redis, TTL, runner=runner)
    now = datetime.now(UTC).isoformat()
    users = ("marks-a@example.com", "marks-b@example.com")
    entries = []
    for number, email in enumerate([*users, users[0], users[1]], start=1):
        await redis.sadd(projects_key(email), "-", "p1")
        entry = Entry(id=f"00000000-0000-4000-8000-00000000010{number}", email=email,
                      project_id="p1", date=day(1), minutes=30, description="m",
                      billable=True, version=1, deleted=False, create_time=now, update_time=now)
        assert (await hot.create(entry)).outcome == "ok"
        entries.append(entry)
    changed, gone = entries[2], entries[3]
    assert (await hot.change(changed.id, changed.email, 1, now, changes={"minutes": "40"})
            ).outcome == "ok"  # now at version 2: a mark of version 1 must not flag it
    await redis.delete(entry_key(gone.id))
    before = {email: await hot.data_token(email) for email in users}

    await hot.mark_synced("pg", entries)
    flags = {e.id: await redis.hmget(entry_key(e.id), "pg", "zoho", "synced") for e in entries}
    assert flags[entries[0].id] == flags[entries[1].id] == ["1", "0", "0"]
    assert flags[changed.id] == ["0", "0", "0"]
    assert not await redis.sismember(unsynced_key(gone.email), gone.id)  # hash gone: dropped
    after = {email: await hot.data_token(email) for email in users}
    assert all(after[email] != before[email] for email in users)

    await hot.mark_synced("zoho", entries[:2])
    for entry in entries[:2]:
        assert await redis.hget(entry_key(entry.id), "synced") == "1"
        assert not await redis.sismember(unsynced_key(entry.email), entry.id)
    assert await redis.sismember(unsynced_key(changed.email), changed.id)

    # a user in two chunks gets a token of its own from each: a write between the two sets a
    # token that the second chunk must not overwrite with one handed out before that write
    seen: list[str | None] = []

    class Watching:
        async def run(self, script: Any, keys: Any, args: Any) -> Any:
            reply = await runner.run(script, keys, args)
            seen.append(await hot.data_token(users[0]))
            return reply

        async def execute(self, *command: Any) -> Any:
            return await runner.execute(*command)

    watched = HotStore(redis, TTL, runner=Watching())
    await watched.mark_synced("pg", [entries[0], entries[1], entries[0]])
    assert len(seen) == 2 and seen[0] != seen[1]


async def test_every_change_a_list_can_show_sets_a_new_data_token(
    redis: aioredis.Redis, runner: RedisRunner
) -> None:
    hot = HotStore(redis, TTL, runner=runner)
    email = "tokens@example.com"
    await redis.sadd(projects_key(email), "-", "p1", "p2")
    hot_start = hot.hot_window_start(today())
    tokens: list[str] = []

    async def new_token() -> str:
        """The token now, which must be new; a list read now shows it too."""
        token = await hot.data_token(email)
        assert token is not None
        tokens.append(token)
        assert len(set(tokens)) == len(tokens), "a change kept the data token"
        assert (await hot.list_rows(email, hot_start, today(), hot_start)).token == token
        assert await hot.data_token(email) == token, "a read of a proven index changed it"
        return token

    assert await hot.data_token(email) is None
    first = (await hot.list_rows(email, hot_start, today(), hot_start)).token  # a read sets it
    assert await hot.data_token(email) == await redis.get(data_token_key(email)) == first
    tokens.append(first)

    now = datetime.now(UTC).isoformat()
    entry = Entry(id="00000000-0000-4000-8000-000000000001", email=email, project_id="p1",
                  date=day(1), minutes=30, description="a", billable=True, version=1,
                  deleted=False, create_time=now, update_time=now)
    assert (await hot.create(entry)).outcome == "ok"
    await new_token()
    nonce = "n1"
    await hot.list_rows(email, hot_start, today(), hot_start, proof_nonce=nonce)
    assert await hot.prove(email, nonce, [])  # the completeness marker is visible to reads
    assert (await hot.list_rows(email, hot_start, today(), hot_start)).complete
    await new_token()

    updated = await hot.change(entry.id, email, 1, now, changes={"minutes": "45"})
    assert updated.outcome == "ok"
    await new_token()
    await hot.mark_synced("pg", [entry.with_changes(version=2)])
    await new_token()
    await hot.mark_synced("zoho", [entry.with_changes(version=2)])
    synced = await new_token()
    await hot.mark_synced("zoho", [entry.with_changes(version=1)])  # stale: changes nothing
    assert await hot.data_token(email) == synced
    await hot.change(entry.id, email, 2, now, changes={"date": day(2)})
    await new_token()
    assert (await hot.change(entry.id, email, 3, now, delete=True)).outcome == "ok"
    await new_token()

    # a hash lost from the hot window: the list removes it and withdraws the proof
    lost = entry.with_changes(id="00000000-0000-4000-8000-000000000002")
    await hot.create(lost)
    before = await new_token()
    await redis.delete(entry_key(lost.id))
    withdrawn = await hot.list_rows(email, hot_start, today(), hot_start)
    assert not withdrawn.complete and withdrawn.token != before
    assert await redis.zscore(by_date_key(email), lost.id) is None
    assert await redis.zscore(by_date_key(email), INDEX_COMPLETE) is None
    tokens.append(withdrawn.token)

    # a lost token (key expired, Redis flushed) gives a new one, never a held one back
    await redis.delete(data_token_key(email))
    assert await hot.data_token(email) is None
    assert (await hot.list_rows(email, hot_start, today(), hot_start)).token not in tokens


async def test_a_warm_cache_on_another_replica_shows_every_change_once_told(
    service_env: dict[str, str], zoho: Zoho, clean_state: None
) -> None:
    env = fast_env(service_env, zoho.url, TIMEENTRIES_INPROCESS_WORKERS="false")
    project = sorted(zoho.state.projects_of(CAROL))[0]
    async with running_service(SERVICE, env) as writer, running_service(SERVICE, env) as reader:
        await sync_projects(writer)
        async with grpc.aio.insecure_channel(writer.address) as a, \
                grpc.aio.insecure_channel(reader.address) as b:
            via_writer, via_reader = Caller(a, CAROL), Caller(b, CAROL)

            async def warm_list() -> list[pb.TimeEntry]:
                """Lists on the reader until it holds the answer (the first read of a new
                index proves it, which is a change); the last read comes from its cache."""
                await via_reader.list()
                await via_reader.list()
                hits = cache_hits(reader)
                entries = list((await via_reader.list()).entries)
                assert cache_hits(reader) == hits + 1, "the reader's cache was not used"
                return entries

            async def reader_shows(check: Callable[[list[pb.TimeEntry]], bool]) -> bool:
                return check(list((await via_reader.list()).entries))

            assert await warm_list() == []
            created = await via_writer.create(project, day(2), 30, "first")
            await wait_for(lambda: reader_shows(
                lambda entries: [e.entry_id for e in entries] == [created.entry_id]), 10)

            assert [e.duration_minutes for e in await warm_list()] == [30]
            updated = await via_writer.stub.UpdateTimeEntry(pb.UpdateTimeEntryRequest(
                entry_id=created.entry_id, version=1, duration_minutes=75),
                metadata=via_writer.metadata, timeout=10)
            await wait_for(lambda: reader_shows(
                lambda entries: [(e.duration_minutes, e.version) for e in entries] == [(75, 2)]
            ), 10)

            other = await via_writer.create(project, day(1), 15, "second")
            assert len(await warm_list()) == 2
            await via_writer.stub.DeleteTimeEntry(pb.DeleteTimeEntryRequest(
                entry_id=other.entry_id, version=1), metadata=via_writer.metadata, timeout=10)
            await wait_for(lambda: reader_shows(
                lambda entries: [e.entry_id for e in entries] == [created.entry_id]), 10)

            states = [e.sync_state for e in await warm_list()]
            assert states == [pb.SYNC_STATE_PENDING]
            # a third replica runs the sink workers: their marks reach the reader's warm cache
            async with running_service(SERVICE, fast_env(service_env, zoho.url)) as drainer:
                await wait_for(lambda: backlog_drained(drainer))
            await wait_for(lambda: reader_shows(
                lambda entries: [(e.entry_id, e.sync_state, e.version) for e in entries] == [
                    (created.entry_id, pb.SYNC_STATE_SYNCED, updated.entry.version)]), 10)
            assert cache_hits(reader) >= 5
