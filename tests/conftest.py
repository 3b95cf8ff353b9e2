"""Fixtures every test shares: real PostgreSQL and Redis, one database and one Redis database
per test session (dropped after), and the environment a service is started with."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.backends import Backends, BackendStack, EmbeddedRedis
from shared.logging import configure_logging
from shared.scratch import scratch_database, scratch_redis_db

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-" + secrets.token_hex(8)
JWT_SECRET = "test-jwt-secret-" + secrets.token_hex(16)
DATA_KEY = secrets.token_urlsafe(32)

configure_logging("info", "json")


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    stack = BackendStack(run_dir=ROOT / ".run" / "test")
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture(scope="session")
async def database_url(backends: Backends) -> AsyncIterator[str]:
    """A database of its own for this test session."""
    async with scratch_database(backends.database_url) as url:
        yield url


@pytest.fixture(scope="session")
async def redis_url(backends: Backends) -> AsyncIterator[str]:
    """A Redis logical database of its own for this session (1-15, rotated by a counter)."""
    async with scratch_redis_db(backends.redis_url) as url:
        yield url


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A redis-server of this test's own: its keys, flushes, command counts and tracking
    messages are this test's alone, and the test may kill and restart it."""
    server = EmbeddedRedis(tmp_path / "redis")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.kill)


@pytest.fixture(scope="session")
def service_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment a service under test starts with (no real upstream credentials)."""
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("NETSUITE_", "STOCKX_", "SHIPSTATION_", "ZOHO_", "SYNCSUITE_"))
    }
    env.update({
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SYNCSUITE_ADMIN_TOKEN": ADMIN_TOKEN,
        "SYNCSUITE_JWT_SECRET": JWT_SECRET,
        "SYNCSUITE_DATA_KEY": DATA_KEY,
        "SYNCSUITE_LOG_FORMAT": "json",
        "SYNCSUITE_METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture(scope="session")
def admin_metadata() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {ADMIN_TOKEN}"),)
