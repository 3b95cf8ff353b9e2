"""The invalidation feed: PostgreSQL ``LISTEN`` on one dedicated connection, telling this
replica's read caches (:class:`shared.readcache.VersionedReadCache`) what changed.

A service's migration adds a trigger that, whenever a row's data version changes, sends
``NOTIFY <channel>, '<tag>\\t<tag>...'`` (``pg_notify``): PostgreSQL delivers it to every
listening replica when, and only if, the transaction commits. The feed hands the tags to the
caches, which then check those values against the database on their next read. Everything
else they hold is answered from memory, without a round trip.

:meth:`InvalidationFeed.caught_up` waits until every change committed before it was called
has reached the caches (a marker notification sent and received back: PostgreSQL delivers
notifications in commit order). A replica's sync job waits for it before it is reported done,
so the caller of ``Sync`` reads its own writes from that replica at once.

When the connection drops (PostgreSQL restarted, network trouble), notifications may be lost:
the caches are told at once and check every read against the database, as without a feed,
until the feed has reconnected and listens again (backing off up to
:data:`MAX_RECONNECT_DELAY`). A keep-alive query every :data:`KEEPALIVE_SECONDS` finds a
connection that died silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from typing import Any, Final

import asyncpg
import structlog

from shared.readcache import VersionedReadCache

__all__ = ["KEEPALIVE_SECONDS", "MARKER_PREFIX", "MAX_RECONNECT_DELAY", "TAG_SEPARATOR",
           "InvalidationFeed"]

log = structlog.get_logger("invalidation")

TAG_SEPARATOR: Final = "\t"
MARKER_PREFIX: Final = "marker:"  # payloads of caught_up(), not tags (tags never hold ':')
KEEPALIVE_SECONDS: Final = 10.0
MAX_RECONNECT_DELAY: Final = 5.0
_CONNECT_TIMEOUT: Final = 10.0


class InvalidationFeed:
    """Listens on ``channel`` and feeds ``caches``. Run :meth:`run` as a background task;
    cancelling it closes the connection (and leaves the caches checking every read)."""

    def __init__(
        self, database_url: str, channel: str, caches: Sequence[VersionedReadCache[Any, Any]],
        *, keepalive_seconds: float = KEEPALIVE_SECONDS, first_retry_delay: float = 0.1,
    ) -> None:
        self._database_url = database_url
        self._channel = channel
        self._caches = tuple(caches)
        self._keepalive_seconds = keepalive_seconds
        self._first_retry_delay = first_retry_delay
        self.connected = asyncio.Event()
        self.connects = 0  # successful (re)connections, for tests and logs
        self.application_name = f"syncsuite-listen-{channel}"[:63]
        self._connection: asyncpg.Connection | None = None
        self._using_connection = asyncio.Lock()  # one statement at a time on it
        self._markers: dict[str, asyncio.Future[None]] = {}
        self._marker_numbers = itertools.count()

    async def run(self) -> None:
        delay = self._first_retry_delay
        while True:
            try:
                await self._listen_until_lost()
                delay = self._first_retry_delay  # it was up: start backing off afresh
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                    TimeoutError) as error:
                log.warning("invalidation_feed_down", channel=self._channel,
                            error=type(error).__name__, retry_in_seconds=round(delay, 2))
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    async def _listen_until_lost(self) -> None:
        connection = await asyncpg.connect(
            self._database_url, timeout=_CONNECT_TIMEOUT,
            server_settings={"application_name": self.application_name})
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(self._channel, self._notified)
            for cache in self._caches:
                cache.feed_up()  # after LISTEN: nothing committed from now on is missed
            self._connection = connection
            self.connected.set()
            self.connects += 1
            log.info("invalidation_feed_listening", channel=self._channel,
                     connects=self.connects)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._keepalive_seconds)
                    break
                async with self._using_connection:
                    await connection.execute("SELECT 1", timeout=self._keepalive_seconds)
            log.warning("invalidation_feed_lost", channel=self._channel)
        finally:
            self._down()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2.0)

    async def caught_up(self, timeout: float = 2.0) -> bool:
        """Waits until the caches have heard of every change committed before this call; False
        if the feed is down or that took longer than ``timeout`` seconds (while it is down,
        the caches check every read against the database anyway)."""
        connection = self._connection
        if connection is None:
            return False
        marker = f"{MARKER_PREFIX}{id(self)}-{next(self._marker_numbers)}"
        arrived = asyncio.get_running_loop().create_future()
        self._markers[marker] = arrived
        try:
            async with asyncio.timeout(timeout):
                async with self._using_connection:
                    await connection.execute("SELECT pg_notify($1, $2)", self._channel, marker)
                await arrived
            return True
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        finally:
            self._markers.pop(marker, None)

    def _down(self) -> None:
        self._connection = None
        self.connected.clear()
        for cache in self._caches:
            cache.feed_down()

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(MARKER_PREFIX):  # caught_up()'s, ours or another replica's
            arrived = self._markers.get(payload)
            if arrived is not None and not arrived.done():
                arrived.set_result(None)
            return
        tags = payload.split(TAG_SEPARATOR)
        for cache in self._caches:
            cache.invalidate(tags)
