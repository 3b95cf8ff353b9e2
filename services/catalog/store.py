"""Every SQL statement of the catalog: cache tables, bulk delta writes, cursors, KPIs, logs.

Delta writes are set-based: the incoming records are COPYed into a temporary table, then a
handful of statements classify them (new / changed / unchanged / failed), upsert what changed,
touch ``last_synced_at`` of the rest and mark what vanished upstream as deleted. The number of
round trips is fixed per batch, whatever the number of records.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from services.catalog.records import EntitySpec, Record, content_hash
from shared.db import quote_ident
from shared.sync import Counts

__all__ = ["CatalogStore", "DeltaResult", "IncomingRecord", "KpiRow"]

_MOMENT_FIELDS = frozenset({"date_created", "last_modified"})


@dataclass(frozen=True)
class IncomingRecord:
    """A record from NetSuite with its validation outcome ("" when valid)."""

    record: Record
    error: str = ""


@dataclass
class DeltaResult:
    counts: Counts
    round_trips: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class KpiRow:
    values: dict[str, Any]
    last_updated: datetime


def _db_value(name: str, value: Any) -> Any:
    if name in _MOMENT_FIELDS:
        return datetime.fromisoformat(value) if value else None
    if name == "base_price":
        return Decimal(value) if value else None
    return value


def _changed(stored: str, given: str) -> str:
    """SQL: the row ``stored`` must be rewritten with ``given`` (new content, revived, or
    not in SYNCED state)."""
    return (f"{stored}.content_hash <> {given}.content_hash OR {stored}.deleted_at IS NOT NULL"
            f" OR {stored}.sync_status <> 'SYNCED'")


def _record_value(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if name == "base_price":
        return "" if value is None else str(value)
    if value is None:
        return ""
    return value


class CatalogStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # -- reads -----------------------------------------------------------------------------------

    async def load(self, spec: EntitySpec) -> tuple[list[Record], datetime | None]:
        """Every live, valid record (id order) and when the newest was synced."""
        table = quote_ident(spec.name)
        columns = ", ".join(spec.fields)
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT {columns} FROM {table} WHERE deleted_at IS NULL"
                " AND sync_status <> 'FAILED' ORDER BY netsuite_id"
            )
            synced = await connection.fetchval(
                f"SELECT max(last_synced_at) FROM {table} WHERE deleted_at IS NULL"
            )
        fields = spec.fields
        records = [{name: _record_value(name, row[i]) for i, name in enumerate(fields)}
                   for row in rows]
        return records, synced

    async def counts(self, spec: EntitySpec) -> tuple[int, int]:
        """(live rows, live rows that failed validation)."""
        row = await self._pool.fetchrow(
            f"SELECT count(*) AS live, count(*) FILTER (WHERE sync_status = 'FAILED') AS failed"
            f" FROM {quote_ident(spec.name)} WHERE deleted_at IS NULL"
        )
        return int(row["live"]), int(row["failed"])

    async def failures(self, spec: EntitySpec, limit: int = 20) -> list[tuple[int, str]]:
        rows = await self._pool.fetch(
            f"SELECT netsuite_id, sync_error FROM {quote_ident(spec.name)}"
            " WHERE deleted_at IS NULL AND sync_status = 'FAILED' ORDER BY netsuite_id LIMIT $1",
            limit,
        )
        return [(int(r["netsuite_id"]), r["sync_error"]) for r in rows]

    async def cursor(self, spec: EntitySpec) -> datetime | None:
        value: datetime | None = await self._pool.fetchval(
            "SELECT last_modified FROM sync_cursors WHERE entity = $1", spec.name
        )
        return value

    async def set_cursor(self, spec: EntitySpec, last_modified: datetime) -> None:
        await self._pool.execute(
            "INSERT INTO sync_cursors (entity, last_modified) VALUES ($1, $2)"
            " ON CONFLICT (entity) DO UPDATE SET last_modified = GREATEST("
            " sync_cursors.last_modified, EXCLUDED.last_modified), updated_at = now()",
            spec.name, last_modified,
        )

    async def clear_cursor(self, spec: EntitySpec) -> None:
        await self._pool.execute("DELETE FROM sync_cursors WHERE entity = $1", spec.name)

    # -- the delta -------------------------------------------------------------------------------

    async def apply(
        self, spec: EntitySpec, incoming: Sequence[IncomingRecord], *, dry_run: bool = False,
        delete_missing: bool = False, present_ids: Sequence[int] | None = None,
        now: datetime | None = None,
    ) -> DeltaResult:
        """Writes ``incoming`` (one record per id) as a delta. Records vanished upstream are
        marked deleted: with ``delete_missing`` those not in ``incoming``; with
        ``present_ids`` (an id sweep) those in neither (the sweep and the fetch run side by
        side: a record created between them is in the fetch only). ``dry_run`` counts and
        writes nothing."""
        started = time.perf_counter()
        now = now or datetime.now(UTC)
        table = quote_ident(spec.name)
        fields = spec.fields
        columns = [*fields, "content_hash", "sync_status", "sync_error"]
        rows = [
            (*(_db_value(name, item.record.get(name)) for name in fields),
             content_hash(spec, item.record), "FAILED" if item.error else "SYNCED",
             item.error[:1000])
            for item in incoming
        ]
        result = DeltaResult(Counts(seen=len(rows)))
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                f"CREATE TEMP TABLE incoming (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            await connection.copy_records_to_table("incoming", records=rows, columns=columns)
            classified = await connection.fetchrow(
                f"SELECT count(*) FILTER (WHERE i.sync_status = 'FAILED') AS failed,"
                f" count(*) FILTER (WHERE i.sync_status <> 'FAILED' AND t.netsuite_id IS NULL)"
                f"   AS created,"
                f" count(*) FILTER (WHERE i.sync_status <> 'FAILED' AND t.netsuite_id IS NOT NULL"
                f"   AND ({_changed('t', 'i')})) AS updated"
                f" FROM incoming i LEFT JOIN {table} t USING (netsuite_id)"
            )
            result.round_trips = 3
            counts = result.counts
            counts.failed = int(classified["failed"])
            counts.created = int(classified["created"])
            counts.updated = int(classified["updated"])
            counts.unchanged = counts.seen - counts.failed - counts.created - counts.updated
            vanished = self._vanished_condition(table, delete_missing, present_ids)
            if dry_run:
                if vanished is not None:
                    condition, args = vanished
                    result.counts.deleted = int(await connection.fetchval(
                        f"SELECT count(*) FROM {table} WHERE {condition}", *args))
                    result.round_trips += 1
            else:
                await self._write(connection, table, fields, now, result)
                if vanished is not None:
                    condition, args = vanished
                    status = await connection.execute(
                        f"UPDATE {table} SET deleted_at = $1, updated_at = now()"
                        f" WHERE {condition.replace('$1', '$2')}", now, *args)
                    result.counts.deleted = int(status.split()[-1])
                    result.round_trips += 1
        result.seconds = time.perf_counter() - started
        return result

    @staticmethod
    def _vanished_condition(
        table: str, delete_missing: bool, present_ids: Sequence[int] | None
    ) -> tuple[str, list[Any]] | None:
        if present_ids is not None:
            return ("deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM unnest($1::bigint[])"
                    f" AS p(id) WHERE p.id = {table}.netsuite_id) AND NOT EXISTS (SELECT 1"
                    f" FROM incoming i WHERE i.netsuite_id = {table}.netsuite_id)",
                    [list(present_ids)])
        if delete_missing:
            return ("deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM incoming i"
                    f" WHERE i.netsuite_id = {table}.netsuite_id)", [])
        return None

    @staticmethod
    async def _write(
        connection: asyncpg.Connection, table: str, fields: tuple[str, ...], now: datetime,
        result: DeltaResult,
    ) -> None:
        names = ", ".join(fields)
        incoming_names = ", ".join(f"i.{name}" for name in fields)
        updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in fields if name != "netsuite_id")
        # valid records: insert new ones, rewrite changed ones (or revived / previously failed);
        # the join picks them out, so unchanged ones never reach the conflict check
        await connection.execute(
            f"INSERT INTO {table} ({names}, content_hash, sync_status, sync_error,"
            f" last_synced_at) SELECT {incoming_names}, i.content_hash, 'SYNCED', '', $1"
            f" FROM incoming i LEFT JOIN {table} t USING (netsuite_id)"
            f" WHERE i.sync_status <> 'FAILED' AND (t.netsuite_id IS NULL OR {_changed('t', 'i')})"
            f" ON CONFLICT (netsuite_id) DO UPDATE SET {updates},"
            f" content_hash = EXCLUDED.content_hash, sync_status = 'SYNCED', sync_error = '',"
            f" last_synced_at = EXCLUDED.last_synced_at, deleted_at = NULL, updated_at = now()"
            f" WHERE {_changed(table, 'EXCLUDED')}",  # only a concurrent writer gets here unchanged
            now,
        )
        # invalid records: stored FAILED with the reason; known ones keep their last good values
        await connection.execute(
            f"INSERT INTO {table} ({names}, content_hash, sync_status, sync_error,"
            f" last_synced_at) SELECT {names}, content_hash, 'FAILED', sync_error, $1"
            f" FROM incoming WHERE sync_status = 'FAILED'"
            f" ON CONFLICT (netsuite_id) DO UPDATE SET sync_status = 'FAILED',"
            f" sync_error = EXCLUDED.sync_error, last_synced_at = EXCLUDED.last_synced_at,"
            f" deleted_at = NULL, updated_at = now()",
            now,
        )
        # unchanged records: only last_synced_at
        await connection.execute(
            f"UPDATE {table} t SET last_synced_at = $1 FROM incoming i"
            f" WHERE t.netsuite_id = i.netsuite_id AND t.last_synced_at IS DISTINCT FROM $1",
            now,
        )
        result.round_trips += 3

    # -- KPIs and logs ---------------------------------------------------------------------------

    async def read_kpis(self) -> KpiRow | None:
        row = await self._pool.fetchrow("SELECT * FROM customer_kpis_cache WHERE id = 1")
        return self._kpi_row(row)

    async def live_kpis(self) -> KpiRow | None:
        """The same figures computed on the spot (what the cache saves; used by the bench)."""
        row = await self._pool.fetchrow("SELECT * FROM customer_kpis_live")
        return self._kpi_row(row)

    @staticmethod
    def _kpi_row(row: asyncpg.Record | None) -> KpiRow | None:
        if row is None:
            return None
        values = dict(row)
        last_updated = values.pop("last_updated")
        values.pop("id", None)
        return KpiRow(values, last_updated)

    async def refresh_kpis(self) -> tuple[datetime, float]:
        """REFRESH ... CONCURRENTLY (readers keep reading the old rows meanwhile)."""
        started = time.perf_counter()
        async with self._pool.acquire() as connection:
            await connection.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY customer_kpis_cache")
            updated: datetime = await connection.fetchval(
                "SELECT last_updated FROM customer_kpis_cache WHERE id = 1"
            )
        return updated, time.perf_counter() - started

    async def log(self, level: str, source: str, message: str,
                  details: dict[str, Any] | None = None) -> None:
        await self._pool.execute(
            "INSERT INTO system_logs (level, source, message, details) VALUES ($1, $2, $3, $4)",
            level, source, message, details or {},
        )

    async def recent_logs(self, source: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT created_at, level, message, details FROM system_logs WHERE source = $1"
            " ORDER BY created_at DESC, id DESC LIMIT $2", source, limit,
        )
        return [dict(row) for row in rows]
