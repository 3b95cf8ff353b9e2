"""Fixtures every test shares: real PostgreSQL and Redis, one database and one Redis database
per test session (dropped after), and the environment a service is started with."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis

from shared.backends import Backends, BackendStack
from shared.logging import configure_logging

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-" + secrets.token_hex(8)
JWT_SECRET = "test-jwt-secret-" + secrets.token_hex(16)

configure_logging("info", "json")


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    stack = BackendStack(run_dir=ROOT / ".run" / "test")
    try:
        yield stack.start()
    finally:
        stack.stop()


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture(scope="session")
async def database_url(backends: Backends) -> AsyncIterator[str]:
    """A database of its own for this test session."""
    name = f"syncsuite_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(backends.database_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(backends.database_url, name)
    admin = await asyncpg.connect(backends.database_url, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def redis_url(backends: Backends) -> Iterator[str]:
    """A Redis logical database of its own for this session (1-15, rotated by a counter)."""
    base = redis.Redis.from_url(_with_redis_db(backends.redis_url, 0))
    try:
        db = int(base.incr("syncsuite:test-session-counter")) % 15 + 1
    finally:
        base.close()
    url = _with_redis_db(backends.redis_url, db)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


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
        "SYNCSUITE_LOG_FORMAT": "json",
        "SYNCSUITE_METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture(scope="session")
def admin_metadata() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {ADMIN_TOKEN}"),)
