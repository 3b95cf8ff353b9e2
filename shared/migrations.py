"""Versioned SQL migrations, applied at start under an advisory lock.

Files are ``NNNN_description.sql`` in a folder; each source has a namespace (``sync`` for the
shared job tables, the service name for its own), so shared and domain migrations version
independently. Each file runs once, in its own transaction, recorded in
``schema_migrations`` with its checksum; an applied file that changed is an error, not a
silent skip. Replicas starting together wait on the lock and find the work done.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from shared.db import quote_ident

__all__ = ["Migration", "MigrationError", "apply_migrations", "discover"]

log = structlog.get_logger("migrations")
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


async def apply_migrations(
    connection: asyncpg.Connection, schema: str, migrations: list[Migration]
) -> list[Migration]:
    """Creates ``schema`` if needed and applies what is missing, on a connection whose
    search_path starts with ``schema``; returns the migrations applied by this call."""
    lock_key = zlib.crc32(f"syncsuite-migrations:{schema}".encode())
    await connection.execute("SELECT pg_advisory_lock($1)", lock_key)
    applied_now: list[Migration] = []
    try:
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await connection.execute(_LEDGER)
        rows = await connection.fetch("SELECT namespace, version, checksum FROM schema_migrations")
        done = {(r["namespace"], r["version"]): r["checksum"] for r in rows}
        for migration in migrations:
            key = (migration.namespace, migration.version)
            if key in done:
                if done[key] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.namespace}/{migration.version:04d}_"
                        f"{migration.name} was changed after it was applied; add a new one"
                    )
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (namespace, version, name, checksum)"
                    " VALUES ($1, $2, $3, $4)",
                    migration.namespace, migration.version, migration.name, migration.checksum,
                )
            applied_now.append(migration)
            log.info("migration_applied", schema=schema, namespace=migration.namespace,
                     version=migration.version, name=migration.name)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", lock_key)
    return applied_now
