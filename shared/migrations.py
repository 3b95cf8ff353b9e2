"""Versioned SQL migrations, applied at start under an advisory lock.

Files are ``NNNN_description.sql`` in a folder; each source has a namespace (``sync`` for the
shared job tables, the service name for its own), so shared and domain migrations version
independently. Each file runs once, in its own transaction, recorded in
``schema_migrations`` with its checksum; an applied file that changed is an error, not a
silent skip. Replicas starting together wait on the lock and find the work done; one that
waits too long is told another replica is migrating.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from shared.db import quote_ident

__all__ = [
    "Migration",
    "MigrationError",
    "apply_migrations",
    "discover",
    "migration_lock_key",
]

log = structlog.get_logger("migrations")
# Long on purpose: a replica waits out another's migrations, and a migration may rewrite a
# big table. The services pass SYNCSUITE_MIGRATION_LOCK_TIMEOUT / SYNCSUITE_MIGRATION_TIMEOUT.
DEFAULT_LOCK_TIMEOUT_SECONDS = 3600.0
DEFAULT_STATEMENT_TIMEOUT_SECONDS = 1800.0
LOCK_POLL_SECONDS = 0.5
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    namespace: str
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.version:04d}_{self.name}"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(namespace: str, folder: Path) -> list[Migration]:
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_description.sql")
        migrations.append(
            Migration(namespace, int(match.group(1)), match.group(2), path.read_text())
        )
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{folder}: two migrations share a version number")
    return migrations


_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    namespace text NOT NULL,
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, version)
)
"""


def migration_lock_key(schema: str) -> int:
    """The advisory lock a replica holds while it migrates ``schema``."""
    return zlib.crc32(f"syncsuite-migrations:{schema}".encode())


async def _lock_migrations(connection: asyncpg.Connection, schema: str, timeout: float) -> None:
    """Takes the migration lock of ``schema``, waiting up to ``timeout`` seconds for the replica
    that holds it. Polled rather than blocking in ``pg_advisory_lock``: a client-side timeout
    cancelling that call could race the grant and leave the lock held by this session."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    key = migration_lock_key(schema)
    while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", key, timeout=timeout):
        if loop.time() >= deadline:
            raise MigrationError(
                f"another replica has been migrating schema {schema} for more than"
                f" {timeout:g} s (it holds the migration lock); start again once it is done, or"
                " raise SYNCSUITE_MIGRATION_LOCK_TIMEOUT"
            )
        await asyncio.sleep(min(LOCK_POLL_SECONDS, max(deadline - loop.time(), 0)))


async def apply_migrations(
    connection: asyncpg.Connection,
    schema: str,
    migrations: list[Migration],
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT_SECONDS,
) -> list[Migration]:
    """Creates ``schema`` if needed and applies what is missing, on a connection whose
    search_path starts with ``schema``; returns the migrations applied by this call.

    Waits up to ``lock_timeout`` seconds for another replica migrating the same schema, and
    gives each statement (a whole migration file) ``statement_timeout`` seconds: both are
    passed explicitly, as a pool's ``command_timeout`` is sized for requests, not migrations."""
    await _lock_migrations(connection, schema, lock_timeout)
    applied_now: list[Migration] = []
    try:
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}",
                                 timeout=statement_timeout)
        await connection.execute(_LEDGER, timeout=statement_timeout)
        rows = await connection.fetch("SELECT namespace, version, checksum FROM schema_migrations",
                                      timeout=statement_timeout)
        done = {(r["namespace"], r["version"]): r["checksum"] for r in rows}
        for migration in migrations:
            key = (migration.namespace, migration.version)
            if key in done:
                if done[key] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.label} was changed after it was applied;"
                        " add a new one"
                    )
                continue
            await _apply(connection, migration, statement_timeout)
            applied_now.append(migration)
            log.info("migration_applied", schema=schema, namespace=migration.namespace,
                     version=migration.version, name=migration.name)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", migration_lock_key(schema),
                                 timeout=statement_timeout)
    return applied_now


async def _apply(connection: asyncpg.Connection, migration: Migration, timeout: float) -> None:
    try:
        async with connection.transaction():
            await connection.execute(migration.sql, timeout=timeout)
            await connection.execute(
                "INSERT INTO schema_migrations (namespace, version, name, checksum)"
                " VALUES ($1, $2, $3, $4)",
                migration.namespace, migration.version, migration.name, migration.checksum,
                timeout=timeout,
            )
    except TimeoutError:
        raise MigrationError(
            f"migration {migration.label} did not finish within {timeout:g} s and was rolled"
            " back; raise SYNCSUITE_MIGRATION_TIMEOUT if it needs longer"
        ) from None
