"""Test helpers for read caches fed by PostgreSQL notifications (shared.invalidation)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from shared.invalidation import InvalidationFeed
from shared.readcache import VersionedReadCache

WAIT = 10.0


async def until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Waits until ``condition()`` holds, polling; AssertionError naming ``what`` after
    ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not in {timeout} s: {what}")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def feeding(database_url: str, channel: str, *caches: VersionedReadCache[Any, Any],
                  **options: float) -> AsyncIterator[InvalidationFeed]:
    """An invalidation feed for ``caches`` on ``channel``, listening when this yields."""
    feed = InvalidationFeed(database_url, channel, caches, **options)
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.connected.wait(), WAIT)
        yield feed
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)
