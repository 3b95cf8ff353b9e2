"""Throwaway backends for test sessions and benchmarks: a PostgreSQL database and a Redis
logical database of their own on a shared server, emptied or dropped afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis

__all__ = ["scratch_database", "scratch_redis_db", "with_path"]

# Shared by every session on a machine, so concurrent sessions pick different databases.
REDIS_DB_COUNTER = "syncsuite:test-session-counter"


def with_path(url: str, path: str) -> str:
    """``url`` with its path (database name or number) replaced."""
    return urlunsplit(urlsplit(url)._replace(path=path))


@contextlib.asynccontextmanager
async def scratch_database(server_url: str, prefix: str = "syncsuite_test") -> AsyncIterator[str]:
    """The URL of a new database on ``server_url``'s server, dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_path(server_url, f"/{name}")
    finally:
        admin = await asyncpg.connect(server_url, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def scratch_redis_db(server_url: str) -> AsyncIterator[str]:
    """The URL of a Redis logical database 1-15 that holds no keys (the next one after a
    counter shared by all sessions; if none is empty, the next one, flushed first), flushed
    on exit."""
    base = aioredis.Redis.from_url(with_path(server_url, "/0"))
    try:
        for attempt in range(15):
            db = int(await base.incr(REDIS_DB_COUNTER)) % 15 + 1
            async with aioredis.Redis.from_url(with_path(server_url, f"/{db}")) as probe:
                if await probe.dbsize() == 0:
                    break
                if attempt == 14:  # every one holds keys (runs that were killed): empty this
                    await probe.flushdb()
    finally:
        await base.aclose()
    url = with_path(server_url, f"/{db}")
    try:
        yield url
    finally:
        async with aioredis.Redis.from_url(url) as client:
            await client.flushdb()
