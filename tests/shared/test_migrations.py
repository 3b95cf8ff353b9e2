"""Versioned migrations: applied once, in order, under a lock, even by racing processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path

import asyncpg
import pytest

from shared.migrations import (
    Migration,
    MigrationError,
    apply_migrations,
    discover,
    migration_lock_key,
)

FIRST = "CREATE TABLE widgets (id serial PRIMARY KEY, name text NOT NULL);\n"
SECOND = "INSERT INTO widgets (name) VALUES ('only once');\n"


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


async def _migrate(database_url: str, schema: str, folder: Path) -> int:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        await connection.execute(f'SET search_path TO "{schema}"')
        return len(await apply_migrations(connection, schema, discover("demo", folder)))
    finally:
        await connection.close()


def _migrate_in_process(database_url: str, schema: str, folder: str, start: object) -> None:
    start.wait(10)  # type: ignore[attr-defined]
    asyncio.run(_migrate(database_url, schema, Path(folder)))


async def test_two_processes_starting_at_once_apply_each_migration_once(
    database_url: str, tmp_path: Path
) -> None:
    folder = _write(tmp_path / "m", {"0001_widgets.sql": FIRST, "0002_seed.sql": SECOND})
    schema = "race_test"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    racers = [
        context.Process(target=_migrate_in_process, args=(database_url, schema, str(folder), start))
        for _ in range(2)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
        assert racer.exitcode == 0
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        assert await connection.fetchval(f'SELECT count(*) FROM "{schema}".widgets') == 1
        ledger = await connection.fetch(
            f'SELECT version FROM "{schema}".schema_migrations ORDER BY version'
        )
        assert [row["version"] for row in ledger] == [1, 2]
    finally:
        await connection.close()


async def test_a_changed_applied_migration_is_refused(database_url: str, tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", {"0001_widgets.sql": FIRST})
    assert await _migrate(database_url, "changed_test", folder) == 1
    assert await _migrate(database_url, "changed_test", folder) == 0
    (folder / "0001_widgets.sql").write_text(FIRST + "-- edited\n")
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        await _migrate(database_url, "changed_test", folder)


def test_badly_named_files_are_refused(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", {"widgets.sql": FIRST})
    with pytest.raises(MigrationError, match=r"NNNN_description\.sql"):
        discover("demo", folder)


async def test_a_replica_that_waits_too_long_for_the_lock_is_told_another_is_migrating(
    database_url: str,
) -> None:
    other_replica = await asyncpg.connect(database_url, timeout=10)
    waiting = await asyncpg.connect(database_url, timeout=10)
    try:
        await other_replica.execute("SELECT pg_advisory_lock($1)", migration_lock_key("locked"))
        started = time.monotonic()
        with pytest.raises(MigrationError, match="another replica has been migrating schema"):
            await apply_migrations(waiting, "locked", [], lock_timeout=0.5)
        assert time.monotonic() - started < 5
        await other_replica.execute("SELECT pg_advisory_unlock($1)", migration_lock_key("locked"))
        assert await apply_migrations(waiting, "locked", [], lock_timeout=5) == []
    finally:
        await asyncio.gather(other_replica.close(), waiting.close())


async def test_a_migration_may_run_longer_than_the_connections_command_timeout(
    database_url: str,
) -> None:
    # a pool's command_timeout (60 s for the services) is for requests, not for migrations
    connection = await asyncpg.connect(database_url, timeout=10, command_timeout=0.5)
    try:
        await connection.execute("SET search_path TO slow_test")
        slow = Migration("demo", 1, "slow", "SELECT pg_sleep(1)")
        assert await apply_migrations(connection, "slow_test", [slow]) == [slow]
    finally:
        await connection.close()


async def test_a_migration_over_its_timeout_is_rolled_back_and_named(database_url: str) -> None:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        await connection.execute("SET search_path TO overrun_test")
        overrun = Migration("demo", 1, "overrun",
                            "CREATE TABLE half_done (id int); SELECT pg_sleep(5)")
        with pytest.raises(MigrationError, match=r"demo/0001_overrun did not finish within 0.5 s"):
            await apply_migrations(connection, "overrun_test", [overrun], statement_timeout=0.5)
        assert await connection.fetchval("SELECT to_regclass('overrun_test.half_done')") is None
        assert await connection.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await connection.close()
