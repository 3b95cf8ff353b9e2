"""The Redis invalidation feed: Redis server-assisted client-side caching on one dedicated
connection, telling this replica's read caches (:class:`shared.readcache.VersionedReadCache`)
which keys changed, as :mod:`shared.invalidation` does with PostgreSQL ``LISTEN``.

The connection speaks RESP2 and turns tracking on for itself in broadcasting mode::

    CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <prefix> ...
    SUBSCRIBE __redis__:invalidate

From then on Redis sends it, at the end of every event-loop turn that changed keys starting
with a prefix, one message naming those keys (a script that changes three of them: one message
with three keys), and a message with no keys (``nil``) when a database is flushed. The feed
turns each key into a cache tag with ``tag_of_key`` (None: not a key the caches show) and
calls :meth:`~shared.readcache.VersionedReadCache.invalidate`; a flush invalidates
:data:`~shared.readcache.EVERYTHING`.

Why broadcasting rather than Redis's default mode (tracking the keys a data connection read):
the tracking then lives on the feed's own connection, so it does not depend on which connection
read what (a data connection that reconnects would lose its tracked keys, and its
``REDIRECT`` would have to follow the feed's connection id), and Redis keeps no table of the
keys each client read. The price: every replica hears of every change under the prefixes,
whether it holds a value for it or not (see the service's README for what that costs).

Messages carry key names, not database numbers: a change to the same key name in another
logical database, or a flush of another database, invalidates too (more checks, never a stale
answer).

The caches trust nothing the feed may have missed: :meth:`~VersionedReadCache.feed_up` is
called only once tracking is on and the subscription is confirmed (values loaded from then on
may be trusted); when the connection drops, is killed (``CLIENT KILL``), or leaves a ``PING``
unanswered (checked after :data:`~shared.feed.KEEPALIVE_SECONDS` without a message),
the caches are told at once (:meth:`~VersionedReadCache.feed_down`: every read checks Redis)
and the feed reconnects, backing off up to :data:`~shared.feed.MAX_RECONNECT_DELAY`,
and turns tracking on again on its new connection.

A message costs this replica one socket read and a hiredis parse, handed to the caches in the
read's own callback (:class:`~shared.pipelined_redis.PipelinedRedis` with ``on_push``): every
write under the prefixes, by any replica, reaches every replica, so this runs as often as the
busiest write RPC. (redis-py's pub/sub reader spent ~70 µs of a 2-core box's CPU per message,
~8% of CreateTimeEntry's server time.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Final

from redis.exceptions import RedisError

from shared.feed import KEEPALIVE_SECONDS, ReconnectingFeed
from shared.pipelined_redis import PipelinedRedis
from shared.readcache import EVERYTHING, VersionedReadCache

__all__ = ["INVALIDATION_CHANNEL", "RedisInvalidationFeed"]

INVALIDATION_CHANNEL: Final = "__redis__:invalidate"
_CONNECT_TIMEOUT: Final = 10.0


class RedisInvalidationFeed(ReconnectingFeed):
    """Hears of changes to keys starting with any of ``prefixes`` and feeds ``caches`` the
    tags ``tag_of_key`` gives them."""

    connection_errors = (OSError, RedisError, TimeoutError)

    def __init__(
        self, redis_url: str, prefixes: Sequence[str], tag_of_key: Callable[[str], str | None],
        caches: Sequence[VersionedReadCache[Any, Any]], *,
        keepalive_seconds: float = KEEPALIVE_SECONDS, first_retry_delay: float = 0.1,
    ) -> None:
        if not prefixes:
            raise ValueError("give at least one key prefix (an empty one means every key)")
        super().__init__(f"redis:{','.join(prefixes)}", caches,
                         keepalive_seconds=keepalive_seconds, first_retry_delay=first_retry_delay)
        self._redis_url = redis_url
        self._prefixes = tuple(prefixes)
        self._tag_of_key = tag_of_key
        self.client_id: int | None = None  # the connection's CLIENT ID while connected

    async def _listen_until_lost(self) -> None:
        lost = asyncio.Event()
        # RESP2; key names that are not UTF-8 are kept (surrogates), never refused.
        connection = PipelinedRedis(
            self._redis_url, timeout=_CONNECT_TIMEOUT, connect_timeout=_CONNECT_TIMEOUT,
            client_name="syncsuite-invalidation-feed", text_errors="surrogateescape",
            reconnect=False, on_push=self._pushed, on_lost=lambda _error: lost.set())
        try:
            client_id = int(await connection.execute("CLIENT", "ID"))
            await connection.execute(
                "CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST",
                *(arg for prefix in self._prefixes for arg in ("PREFIX", prefix)))
            confirmation = await connection.execute("SUBSCRIBE", INVALIDATION_CHANNEL)
            if confirmation[0] != "subscribe":
                raise RedisError(f"unexpected answer to SUBSCRIBE: {confirmation[0]!r}")
            self.client_id = client_id
            self._up(client_id=client_id)  # tracked and subscribed: no change is missed
            await self._keep_alive(lost, lambda: asyncio.wait_for(
                connection.execute("PING"), self._keepalive_seconds))
        finally:
            self.client_id = None
            self._down()
            await connection.aclose()

    def _pushed(self, message: list[Any]) -> None:
        if message[1] == INVALIDATION_CHANNEL:
            self._invalidated(message[2])

    def _invalidated(self, keys: list[str] | None) -> None:
        self.messages += 1
        if keys is None:  # a database was flushed
            tags: Sequence[str] = (EVERYTHING,)
        else:
            tag_of_key = self._tag_of_key
            tags = [tag for key in keys if (tag := tag_of_key(key)) is not None]
            if not tags:
                return
        self._invalidate(tags)
