"""shared.backends against real servers: the machine's own, and embedded ones on free ports."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis
import redis.asyncio
from structlog.testing import capture_logs

from shared.backends import (
    BackendError,
    BackendStack,
    EmbeddedPostgres,
    EmbeddedRedis,
    mask_password,
)
from shared.redaction import MASK

pytestmark = pytest.mark.timeout(60)


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(tmp_path / "postgres") as server:
        yield server


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server


def test_configured_urls_win_and_start_nothing(tmp_path: Path) -> None:
    environ = {
        "DATABASE_URL": "postgresql://app:s3cret@db.example:5432/app",
        "REDIS_URL": "redis://:s3cret@cache.example:6379/2",
        "SYNCSUITE_BACKENDS": "embedded",  # configured URLs win even over a forced step
    }
    run_dir = tmp_path / "run"
    with capture_logs() as logs, BackendStack(run_dir, environ) as backends:
        assert backends.database_url == environ["DATABASE_URL"]
        assert backends.redis_url == environ["REDIS_URL"]
        assert (backends.postgres_source, backends.redis_source) == ("configured", "configured")
    assert not run_dir.exists()
    assert [log["source"] for log in logs] == ["configured", "configured"]
    assert "s3cret" not in repr(logs)


def test_local_default_ports_are_found(tmp_path: Path) -> None:
    if not (answers(5432) and answers(6379)):
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 or no Redis on 127.0.0.1:6379")
    with BackendStack(tmp_path / "run", environ={}) as backends:
        assert backends.database_url == "postgresql://postgres@127.0.0.1:5432/postgres"
        assert backends.redis_url == "redis://127.0.0.1:6379/0"
        assert (backends.postgres_source, backends.redis_source) == ("local", "local")
    assert not (tmp_path / "run").exists()


async def test_embedded_servers_round_trip(
    postgres: EmbeddedPostgres, redis_server: EmbeddedRedis
) -> None:
    conn = await asyncpg.connect(postgres.url, timeout=5)
    try:
        await conn.execute("CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL)")
        await conn.execute("INSERT INTO item VALUES ($1, $2)", 1, "widget")
        assert await conn.fetchval("SELECT name FROM item WHERE id = $1", 1) == "widget"
    finally:
        await conn.close(timeout=5)

    client = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        await client.set("item:1", "widget")
        assert await client.get("item:1") == b"widget"
    finally:
        await client.aclose()


async def test_postgres_reuses_its_data_dir_and_takes_over_a_leftover_server(
    postgres: EmbeddedPostgres,
) -> None:
    conn = await asyncpg.connect(postgres.url, timeout=5)
    await conn.execute("CREATE TABLE kept (id int)")
    await conn.close(timeout=5)

    with EmbeddedPostgres(postgres.data_dir) as next_run:  # the old server is still up
        assert not answers(postgres.port)
        conn = await asyncpg.connect(next_run.url, timeout=5)
        try:
            assert await conn.fetchval("SELECT to_regclass('kept') IS NOT NULL")
        finally:
            await conn.close(timeout=5)
    assert not answers(next_run.port)


def test_redis_takes_over_a_leftover_server(redis_server: EmbeddedRedis) -> None:
    with EmbeddedRedis(redis_server.data_dir) as next_run:
        assert not answers(redis_server.port)
        with redis_client(next_run.url) as client:
            assert client.ping()
    assert not answers(next_run.port)


def test_redis_append_only_file_survives_a_kill(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True, appendfsync="always")
    server.start()
    try:
        with redis_client(server.url) as client:
            client.mset({f"key:{n}": n for n in range(100)})
        server.kill()
        assert not answers(server.port)
        server.start()
        with redis_client(server.url) as client:
            assert client.dbsize() == 100
            assert client.get("key:99") == b"99"
    finally:
        server.stop()


def test_stack_can_be_forced_to_embedded_servers(tmp_path: Path) -> None:
    stack = BackendStack(tmp_path / "run", environ={"SYNCSUITE_BACKENDS": "embedded"})
    with stack as backends:
        assert (backends.postgres_source, backends.redis_source) == ("embedded", "embedded")
        assert stack.start() is backends  # idempotent
        assert (tmp_path / "run" / "postgres" / "PG_VERSION").exists()
        with redis_client(backends.redis_url) as client:
            assert client.ping()
        ports = [urlsplit(url).port or 0 for url in (backends.database_url, backends.redis_url)]
    assert not any(answers(port) for port in ports)


def test_a_server_that_fails_to_stop_does_not_keep_the_others_running(tmp_path: Path) -> None:
    stack = BackendStack(tmp_path / "run", environ={"SYNCSUITE_BACKENDS": "embedded"})
    backends = stack.start()
    newest = stack._owned[-1]  # Redis, started after PostgreSQL
    stop_for_real = newest.stop

    def fail_to_stop() -> None:
        raise BackendError("redis would not stop")

    newest.stop = fail_to_stop  # type: ignore[method-assign]
    try:
        with pytest.raises(BackendError, match="would not stop"):
            stack.stop()
        assert not answers(urlsplit(backends.database_url).port or 0)  # stopped all the same
    finally:
        stop_for_real()


def test_unknown_forced_step_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="SYNCSUITE_BACKENDS"):
        BackendStack(tmp_path, environ={"SYNCSUITE_BACKENDS": "cloud"}).start()


def test_mask_password_hides_only_the_password() -> None:
    assert mask_password("postgresql://app:p%40ss@db:5432/app") == (
        f"postgresql://app:{MASK}@db:5432/app"
    )
    assert mask_password("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
