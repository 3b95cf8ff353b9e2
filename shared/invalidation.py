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
:data:`~shared.feed.MAX_RECONNECT_DELAY`). A keep-alive query every
:data:`~shared.feed.KEEPALIVE_SECONDS` finds a connection that died silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Final

import asyncpg

from shared.feed import KEEPALIVE_SECONDS, ReconnectingFeed
from shared.ids import UniqueIds
from shared.readcache import VersionedReadCache

__all__ = ["MARKER_PREFIX", "TAG_SEPARATOR", "InvalidationFeed"]

TAG_SEPARATOR: Final = "\t"
MARKER_PREFIX: Final = "marker:"  # payloads of caught_up(); no tag starts so
_CONNECT_TIMEOUT: Final = 10.0
_new_marker = UniqueIds()


class InvalidationFeed(ReconnectingFeed):
    """Listens on ``channel`` and feeds ``caches``."""

    connection_errors = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)

    def __init__(
        self, database_url: str, channel: str, caches: Sequence[VersionedReadCache[Any, Any]],
        *, keepalive_seconds: float = KEEPALIVE_SECONDS, first_retry_delay: float = 0.1,
    ) -> None:
        super().__init__(channel, caches, keepalive_seconds=keepalive_seconds,
                         first_retry_delay=first_retry_delay)
        self._database_url = database_url
        self.application_name = f"syncsuite-listen-{channel}"[:63]
        self._connection: asyncpg.Connection | None = None
        self._using_connection = asyncio.Lock()  # one statement at a time on it
        self._markers: dict[str, asyncio.Future[None]] = {}

    async def _listen_until_lost(self) -> None:
        connection = await asyncpg.connect(
            self._database_url, timeout=_CONNECT_TIMEOUT,
            server_settings={"application_name": self.application_name})
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(self.name, self._notified)
            self._connection = connection
            self._up()  # after LISTEN: nothing committed from now on is missed

            async def ping() -> None:
                async with self._using_connection:
                    await connection.execute("SELECT 1", timeout=self._keepalive_seconds)

            await self._keep_alive(lost, ping)
        finally:
            self._connection = None
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
        marker = MARKER_PREFIX + _new_marker()  # unique across replicas too
        arrived = asyncio.get_running_loop().create_future()
        self._markers[marker] = arrived
        try:
            async with asyncio.timeout(timeout):
                async with self._using_connection:
                    await connection.execute("SELECT pg_notify($1, $2)", self.name, marker)
                await arrived
            return True
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        finally:
            self._markers.pop(marker, None)

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self.messages += 1
        if payload.startswith(MARKER_PREFIX):  # caught_up()'s, ours or another replica's
            arrived = self._markers.get(payload)
            if arrived is not None and not arrived.done():
                arrived.set_result(None)
            return
        self._invalidate(payload.split(TAG_SEPARATOR))
