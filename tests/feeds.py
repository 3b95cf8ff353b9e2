"""Test helpers for read caches (shared.readcache) and their invalidation feeds
(shared.invalidation, shared.redis_invalidation)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import asyncpg

from shared.db import create_pool
from shared.feed import ReconnectingFeed
from shared.invalidation import InvalidationFeed
from shared.readcache import UNCHANGED, Unchanged, Versioned, VersionedReadCache

WAIT = 10.0


Feed = TypeVar("Feed", bound=ReconnectingFeed)


@contextlib.asynccontextmanager
async def running(feed: Feed) -> AsyncIterator[Feed]:
    """``feed`` run in the background, listening when this yields, stopped after."""
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.connected.wait(), WAIT)
        yield feed
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)


@contextlib.asynccontextmanager
async def feeding(database_url: str, channel: str, *caches: VersionedReadCache[Any, Any],
                  **options: float) -> AsyncIterator[InvalidationFeed]:
    """A PostgreSQL invalidation feed for ``caches`` on ``channel``, listening when this
    yields."""
    async with running(InvalidationFeed(database_url, channel, caches, **options)) as feed:
        yield feed


@contextlib.asynccontextmanager
async def scratch_schema(database_url: str, schema: str, ddl: str, *, pool_size: int = 2
                         ) -> AsyncIterator[asyncpg.Pool]:
    """``schema`` made afresh by ``ddl`` and a pool using it; the schema is dropped after."""

    async def run(statements: str) -> None:
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(statements)
        finally:
            await admin.close()

    await run(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; {ddl}")
    pool = await create_pool(database_url, schema, max_size=pool_size)
    try:
        yield pool
    finally:
        await pool.close()
        await run(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def versioned_items(schema: str) -> str:
    """DDL of the table the read-cache tests read: items whose version is a sequence value,
    bumped in the same statement as the data."""
    return f"""
        CREATE SEQUENCE {schema}.versions;
        CREATE TABLE {schema}.items (key text PRIMARY KEY, value text NOT NULL,
                                     version bigint NOT NULL);
    """


async def read_item(pool: asyncpg.Pool, key: str, held: Versioned[str] | None,
                    tags: tuple[str, ...] = ()) -> Versioned[str] | Unchanged:
    """The load the services use: one statement returns the version, and the value only if
    the version differs from the held one."""
    row = await pool.fetchrow(
        "SELECT version, CASE WHEN version IS DISTINCT FROM $2 THEN value END AS value"
        " FROM items WHERE key = $1", key, held.version if held else None)
    if held is not None and row["version"] == held.version:
        return UNCHANGED
    return Versioned(row["version"], row["value"], tags)
