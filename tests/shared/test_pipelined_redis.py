"""The pipelined Redis connection the RPCs run their scripts on: replies in order whatever the
callers do, scripts found or sent, and failures that drop the connection (the next command
connects again) instead of leaving it hanging or answering the wrong caller."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from shared.backends import free_port
from shared.lua import LuaScript
from shared.pipelined_redis import PipelinedRedis
from shared.scratch import with_path
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def pipe(redis_url: str) -> AsyncIterator[PipelinedRedis]:
    client = PipelinedRedis(redis_url, timeout=1.0)
    yield client
    await client.aclose()


def key(name: str) -> str:
    return f"timeentries:test:{name}:{secrets.token_hex(4)}"


async def test_concurrent_commands_each_get_their_own_reply_in_the_urls_database(
    pipe: PipelinedRedis, redis: aioredis.Redis
) -> None:
    keys = [key(f"k{i}") for i in range(200)]
    await redis.mset({name: f"value {i}" for i, name in enumerate(keys)})
    replies = await asyncio.gather(*(pipe.execute("GET", name) for name in keys))
    assert replies == [f"value {i}" for i in range(len(keys))]
    assert await pipe.execute("HSET", keys[0] + ":h", "a", "1", "b", "é") == 2
    assert await redis.hgetall(keys[0] + ":h") == {"a": "1", "b": "é"}


async def test_scripts_run_whether_or_not_redis_has_them_cached(
    pipe: PipelinedRedis, redis: aioredis.Redis
) -> None:
    # a body never loaded before: EVALSHA says NOSCRIPT, EVAL runs (and caches) it
    script = LuaScript(f"-- {secrets.token_hex(8)}\nreturn {{KEYS[1], ARGV[1], tonumber(ARGV[2])}}")
    assert await redis.script_exists(script.sha) == [False]
    assert await pipe.run(script, ["k"], ["v", 7]) == ["k", "v", 7]
    assert await redis.script_exists(script.sha) == [True]
    assert await pipe.run(script, ["k2"], ["w", 8]) == ["k2", "w", 8]


async def test_an_error_reply_raises_and_the_connection_stays_usable(
    pipe: PipelinedRedis,
) -> None:
    failing = LuaScript("return redis.error_reply('BROKEN on purpose')")
    results = await asyncio.gather(pipe.execute("PING"), pipe.run(failing, [], []),
                                   pipe.execute("ECHO", "after"), return_exceptions=True)
    assert results[0] == "PONG"
    assert isinstance(results[1], ResponseError) and "BROKEN on purpose" in str(results[1])
    assert results[2] == "after"


async def test_a_cancelled_caller_does_not_shift_the_replies(
    pipe: PipelinedRedis, redis: aioredis.Redis
) -> None:
    name = key("after-cancel")
    await redis.set(name, "mine")
    blocked = asyncio.create_task(pipe.execute("BLPOP", key("empty"), 0.2))
    await asyncio.sleep(0.05)
    blocked.cancel()
    assert await pipe.execute("GET", name) == "mine"  # answered after BLPOP's skipped reply
    assert blocked.cancelled()


async def test_a_stalled_connection_fails_what_is_in_flight_and_the_next_command_reconnects(
    pipe: PipelinedRedis,
) -> None:
    began = time.monotonic()
    results = await asyncio.gather(pipe.execute("BLPOP", key("empty"), 5),
                                   pipe.execute("PING"), return_exceptions=True)
    assert 0.9 <= time.monotonic() - began < 3
    assert all(isinstance(result, TimeoutError) for result in results), results
    assert await pipe.execute("PING") == "PONG"


async def test_a_lost_connection_fails_what_is_in_flight_and_the_next_command_reconnects(
    pipe: PipelinedRedis, redis: aioredis.Redis
) -> None:
    client_id = await pipe.execute("CLIENT", "ID")
    in_flight = asyncio.create_task(pipe.execute("BLPOP", key("empty"), 5))
    await asyncio.sleep(0.1)
    assert await redis.client_kill_filter(_id=client_id) == 1
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(in_flight, 2)
    assert await pipe.execute("CLIENT", "ID") != client_id


class LostAsSetUp(PipelinedRedis):
    """Its first connection is lost just as its set-up was answered (a CLIENT KILL, a restart,
    an idle-timeout proxy), before the caller's command is sent."""

    lost_once = False

    async def _connect(self) -> None:
        await super()._connect()
        if not self.lost_once:
            self.lost_once = True
            self._drop(ConnectionError("closed by the server"))


async def test_a_connection_lost_as_it_was_set_up_fails_that_command_and_shifts_no_reply(
    redis_url: str,
) -> None:
    client = LostAsSetUp(redis_url, timeout=1.0, client_name="lost-as-set-up")
    mine, theirs = key("mine"), key("theirs")
    with pytest.raises(ConnectionError, match="lost as it was set up"):
        await client.execute("SET", mine, "value")  # connects (set-up lost) and fails fast...
    await client.execute("SET", theirs, "other")  # ...and no command is left queued behind it
    assert await client.execute("GET", theirs) == "other"
    assert await client.execute("GET", mine) is None
    await client.aclose()


async def test_unreachable_or_refusing_redis_raises_connection_error(redis_url: str) -> None:
    nobody = PipelinedRedis(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ConnectionError):
        await nobody.execute("PING")
    refused = PipelinedRedis(with_path(redis_url, "/0").replace("redis://", "redis://:wrong@"))
    with pytest.raises(ConnectionError, match="set-up"):
        await refused.execute("PING")
    with pytest.raises(ConnectionError, match="set-up"):  # not left half set up
        await refused.execute("PING")


async def test_a_reply_that_is_not_utf8_fails_its_caller_only(
    pipe: PipelinedRedis, redis: aioredis.Redis
) -> None:
    name = key("binary")
    await redis.set(name, b"\xff\xfe")
    results = await asyncio.gather(pipe.execute("GET", name), pipe.execute("ECHO", "next"),
                                   return_exceptions=True)
    assert isinstance(results[0], ResponseError) and "UTF-8" in str(results[0])
    assert results[1] == "next"


async def test_a_closed_client_refuses_commands_instead_of_reconnecting(redis_url: str) -> None:
    client = PipelinedRedis(redis_url)
    assert await client.execute("PING") == "PONG"
    await client.aclose()
    with pytest.raises(ConnectionError, match="closed"):
        await client.execute("PING")


async def test_a_subscribed_connection_hands_messages_over_and_hears_of_its_loss(
    redis_url: str, redis: aioredis.Redis
) -> None:
    """The invalidation feed's way of using it: messages (text kept byte for byte) go to
    ``on_push``; a killed idle connection is reported to ``on_lost`` and stays lost."""
    channel = key("channel")
    pushed: list[list[object]] = []
    lost: list[Exception] = []
    feed = PipelinedRedis(redis_url, timeout=1.0, client_name="pipelined-test-feed",
                          text_errors="surrogateescape", reconnect=False,
                          on_push=pushed.append, on_lost=lost.append)
    try:
        client_id = await feed.execute("CLIENT", "ID")
        assert await feed.execute("SUBSCRIBE", channel) == ["subscribe", channel, 1]
        assert await redis.publish(channel, b"caf\xc3\xa9 \xff") == 1
        assert await feed.execute("PING") == ["pong", ""]  # answered after the message
        assert pushed == [["message", channel, "café \udcff"]]
        names = {entry["id"]: entry["name"] for entry in await redis.client_list()}
        assert names[str(client_id)] == "pipelined-test-feed"

        assert await redis.client_kill_filter(_id=client_id) == 1
        await wait_for(lambda: bool(lost), timeout=1, every=0.01, what="the loss heard")
        assert len(lost) == 1 and isinstance(lost[0], ConnectionError)
        with pytest.raises(ConnectionError, match="connects once"):
            await feed.execute("PING")
    finally:
        await feed.aclose()
