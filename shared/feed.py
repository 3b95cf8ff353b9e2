"""What every invalidation feed shares: a dedicated connection that, while it listens, tells
this replica's read caches (:class:`shared.readcache.VersionedReadCache`) what changed, and
reconnects with backoff when it is lost. :mod:`shared.invalidation` (PostgreSQL ``LISTEN``)
and :mod:`shared.redis_invalidation` (Redis tracking) say how they listen.

The rule both follow: the caches are told :meth:`~VersionedReadCache.feed_up` only once no
change from then on can be missed, and :meth:`~VersionedReadCache.feed_down` as soon as the
connection is lost (every read then checks the source, as without a feed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import structlog

from shared.readcache import VersionedReadCache

__all__ = ["KEEPALIVE_SECONDS", "MAX_RECONNECT_DELAY", "ReconnectingFeed"]

log = structlog.get_logger("invalidation")

KEEPALIVE_SECONDS: Final = 10.0
MAX_RECONNECT_DELAY: Final = 5.0


class ReconnectingFeed:
    """Runs :meth:`_listen_until_lost` again and again (backing off after failures up to
    :data:`MAX_RECONNECT_DELAY`). Run :meth:`run` as a background task; cancelling it closes
    the connection (and leaves the caches checking every read)."""

    # what losing the connection may raise (subclasses name their client's errors)
    connection_errors: tuple[type[BaseException], ...] = (OSError, TimeoutError)

    def __init__(
        self, name: str, caches: Sequence[VersionedReadCache[Any, Any]], *,
        keepalive_seconds: float = KEEPALIVE_SECONDS, first_retry_delay: float = 0.1,
    ) -> None:
        self.name = name  # e.g. the channel or the key prefixes, for logs
        self._caches = tuple(caches)
        self._keepalive_seconds = keepalive_seconds
        self._first_retry_delay = first_retry_delay
        self.connected = asyncio.Event()
        self.connects = 0  # successful (re)connections, for tests and logs
        self.messages = 0  # messages received (subclasses count them), for keep-alive and tests

    async def run(self) -> None:
        delay = self._first_retry_delay
        while True:
            connects, failure = self.connects, None
            try:
                await self._listen_until_lost()
            except self.connection_errors as error:
                failure = type(error).__name__
            if self.connects > connects:  # it was up, however it ended: back off afresh
                delay = self._first_retry_delay
            if failure is not None:
                log.warning("invalidation_feed_down", feed=self.name, error=failure,
                            retry_in_seconds=round(delay, 2))
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    async def _listen_until_lost(self) -> None:
        """Connects, calls :meth:`_up` once listening, hands messages to the caches until the
        connection is lost, and calls :meth:`_down` whatever happens."""
        raise NotImplementedError

    async def _keep_alive(
        self, lost: asyncio.Event, ping: Callable[[], Awaitable[object]]
    ) -> None:
        """Returns once ``lost`` is set. After each keep-alive period without a message, awaits
        ``ping()``, which raises when the connection is gone or leaves it unanswered for a
        keep-alive period."""
        while not lost.is_set():
            heard = self.messages
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self._keepalive_seconds)
                return
            if self.messages == heard:
                await ping()

    def _up(self, **details: Any) -> None:
        for cache in self._caches:
            cache.feed_up()
        self.connected.set()
        self.connects += 1
        log.info("invalidation_feed_listening", feed=self.name, connects=self.connects,
                 **details)

    def _down(self) -> None:
        if self.connected.is_set():
            log.warning("invalidation_feed_lost", feed=self.name)
        self.connected.clear()
        for cache in self._caches:
            cache.feed_down()

    def _invalidate(self, tags: Sequence[str]) -> None:
        for cache in self._caches:
            cache.invalidate(tags)
