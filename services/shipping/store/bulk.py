"""Bulk writes of synced records, one statement per page (round trips grow with pages, not
records), and the comparison a dry run makes instead.

A :class:`BulkTable` names a table's key and value columns; the SQL is built from those
constants (never from input). A :class:`BulkWriter` takes a page of records (objects whose
attributes are named like the columns), upserts it with ``unnest`` arrays in one statement that
only touches rows whose values differ, remembers the keys it saw, and at the end of a full read
marks the rows it did not see as deleted. In a dry run it runs the same comparison as a SELECT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from shared.db import quote_ident
from shared.sync import Counts

__all__ = ["BulkTable", "BulkWriter", "Column"]

SAMPLE_SIZE = 5


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str


@dataclass(frozen=True)
class BulkTable:
    name: str
    keys: tuple[Column, ...]
    values: tuple[Column, ...]
    # The integrations column (and the sequence it takes its values from) that a statement
    # changing rows of this table sets to a new value, in the same statement: the data version
    # a read cache checks (see migrations/0002_inventory_version.sql).
    version: str | None = None

    def _bumping(self, changed: str, result: str) -> str:
        """``changed`` (a data-modifying statement with RETURNING) and, if any row changed,
        a new data version for the integration; the statement answers ``result`` over the
        changed rows (CTE ``changed``)."""
        if self.version is None:
            return f"WITH changed AS ({changed}) {result}"
        column = quote_ident(self.version)
        return (f"WITH changed AS ({changed}), bumped AS (UPDATE integrations"
                f" SET {column} = nextval('{self.version}')"
                " WHERE id = $1 AND EXISTS (SELECT 1 FROM changed))"
                f" {result}")

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.keys + self.values

    def _unnest(self, first_param: int) -> str:
        arrays = ", ".join(f"${first_param + i}::{c.pg_type}[]"
                           for i, c in enumerate(self.columns))
        names = ", ".join(quote_ident(c.name) for c in self.columns)
        return f"unnest({arrays}) AS s({names})"

    def _key_match(self, left: str, right: str) -> str:
        return " AND ".join(f"{left}.{quote_ident(c.name)} = {right}.{quote_ident(c.name)}"
                            for c in self.keys)

    def _values(self, alias: str) -> str:
        return ", ".join(f"{alias}.{quote_ident(c.name)}" for c in self.values)

    @property
    def upsert_sql(self) -> str:
        table = quote_ident(self.name)
        names = ", ".join(quote_ident(c.name) for c in self.columns)
        keys = ", ".join(quote_ident(c.name) for c in self.keys)
        updates = ", ".join(f"{quote_ident(c.name)} = EXCLUDED.{quote_ident(c.name)}"
                            for c in self.values)
        return self._bumping(
            f"INSERT INTO {table} AS t (integration_id, {names}, deleted_at, synced_at)"
            f" SELECT $1, {names}, NULL, now() FROM {self._unnest(2)}"
            f" ON CONFLICT (integration_id, {keys}) DO UPDATE SET {updates},"
            " deleted_at = NULL, synced_at = now()"
            f" WHERE ({self._values('t')}, t.deleted_at IS NOT NULL)"
            f" IS DISTINCT FROM ({self._values('EXCLUDED')}, false)"
            " RETURNING (xmax = 0) AS inserted",
            "SELECT inserted FROM changed",
        )

    @property
    def compare_sql(self) -> str:
        """What an upsert of the same arrays would do: created/updated counts and samples."""
        table = quote_ident(self.name)
        first_key = quote_ident(self.keys[0].name)
        new = "t.integration_id IS NULL"
        changed = (f"t.integration_id IS NOT NULL AND ({self._values('t')},"
                   f" t.deleted_at IS NOT NULL) IS DISTINCT FROM ({self._values('s')}, false)")
        return (
            f"SELECT count(*) FILTER (WHERE {new}) AS created,"
            f" count(*) FILTER (WHERE {changed}) AS updated,"
            f" (array_agg(s.{first_key}::text) FILTER (WHERE {new}))[1:{SAMPLE_SIZE}]"
            " AS created_sample,"
            f" (array_agg(s.{first_key}::text) FILTER (WHERE {changed}))[1:{SAMPLE_SIZE}]"
            " AS updated_sample"
            f" FROM {self._unnest(2)} LEFT JOIN {table} t ON t.integration_id = $1"
            f" AND {self._key_match('t', 's')}"
        )

    def _missing(self) -> str:
        keys = ", ".join(f"${2 + i}::{c.pg_type}[]" for i, c in enumerate(self.keys))
        names = ", ".join(quote_ident(c.name) for c in self.keys)
        columns = ", ".join(f"t.{quote_ident(c.name)}" for c in self.keys)
        # NOT IN over a subquery becomes a hashed subplan (linear); NOT EXISTS over unnest can
        # be planned as a nested loop (quadratic in the number of keys).
        return (
            f"t.integration_id = $1 AND t.deleted_at IS NULL AND ({columns}) NOT IN"
            f" (SELECT {names} FROM unnest({keys}) AS s({names}))"
        )

    @property
    def mark_deleted_sql(self) -> str:
        """Marks the rows not seen as deleted; answers how many."""
        return self._bumping(
            f"UPDATE {quote_ident(self.name)} AS t SET deleted_at = now(),"
            f" synced_at = now() WHERE {self._missing()} RETURNING 1",
            "SELECT count(*) FROM changed",
        )

    @property
    def missing_keys_sql(self) -> str:
        """The keys of the live rows not seen."""
        columns = ", ".join(f"t.{quote_ident(c.name)}" for c in self.keys)
        return f"SELECT {columns} FROM {quote_ident(self.name)} AS t WHERE {self._missing()}"

    @property
    def count_missing_sql(self) -> str:
        first_key = quote_ident(self.keys[0].name)
        return (f"SELECT count(*) AS missing, (array_agg(t.{first_key}::text))[1:{SAMPLE_SIZE}]"
                f" AS sample FROM {quote_ident(self.name)} AS t WHERE {self._missing()}")


class BulkWriter:
    """Writes one operation's pages to ``table`` for one integration (or compares, dry)."""

    def __init__(
        self, pool: asyncpg.Pool, table: BulkTable, integration_id: UUID, *, dry_run: bool
    ) -> None:
        self._pool = pool
        self.table = table
        self.integration_id = integration_id
        self.dry_run = dry_run
        self.counts = Counts()
        self.samples: dict[str, list[str]] = {}  # a few keys per change, for dry runs
        self.round_trips = 0
        self._seen: dict[tuple[Any, ...], None] = {}
        self._spared: dict[tuple[Any, ...], None] = {}

    @property
    def distinct(self) -> int:
        """Records seen so far, each key once (a record read on two pages counts once)."""
        return len(self._seen)

    def _arrays(self, records: Sequence[Any], columns: Sequence[Column]) -> list[list[Any]]:
        return [[getattr(record, c.name) for record in records] for c in columns]

    def _sample(self, name: str, values: list[str] | None) -> None:
        if values:
            sample = self.samples.setdefault(name, [])
            sample.extend(values[: SAMPLE_SIZE - len(sample)])

    async def write(self, records: Sequence[Any]) -> None:
        """One page: a single statement whatever its length."""
        unique: dict[tuple[Any, ...], Any] = {}
        for record in records:
            unique[tuple(getattr(record, c.name) for c in self.table.keys)] = record
        if not unique:
            return
        self._seen.update(dict.fromkeys(unique))
        rows = list(unique.values())
        arrays = self._arrays(rows, self.table.columns)
        self.counts.seen += len(rows)
        self.round_trips += 1
        if self.dry_run:
            result = await self._pool.fetchrow(self.table.compare_sql, self.integration_id,
                                               *arrays)
            created, updated = int(result["created"]), int(result["updated"])
            self._sample("created", result["created_sample"])
            self._sample("updated", result["updated_sample"])
        else:
            inserted = await self._pool.fetch(self.table.upsert_sql, self.integration_id,
                                              *arrays)
            created = sum(1 for row in inserted if row["inserted"])
            updated = len(inserted) - created
        self.counts.created += created
        self.counts.updated += updated
        self.counts.unchanged += len(rows) - created - updated

    def _seen_arrays(self) -> list[list[Any]]:
        """The keys seen or spared, as one array per key column."""
        keys = [*self._seen, *self._spared]
        return [[key[i] for key in keys] for i in range(len(self.table.keys))]

    async def missing_keys(self) -> list[tuple[Any, ...]]:
        """The keys of live rows not seen so far (candidates for :meth:`mark_missing_deleted`)."""
        self.round_trips += 1
        rows = await self._pool.fetch(self.table.missing_keys_sql, self.integration_id,
                                      *self._seen_arrays())
        return [tuple(row) for row in rows]

    def spare(self, keys: Iterable[tuple[Any, ...]]) -> None:
        """Keeps ``keys`` from being marked deleted by this writer, as if they had been seen
        (they are not counted as read)."""
        self._spared.update(dict.fromkeys(keys))

    async def mark_missing_deleted(self) -> None:
        """After a complete read: rows not seen are gone upstream (counted only when dry)."""
        arrays = self._seen_arrays()
        self.round_trips += 1
        if self.dry_run:
            row = await self._pool.fetchrow(self.table.count_missing_sql, self.integration_id,
                                            *arrays)
            self.counts.deleted += int(row["missing"])
            self._sample("deleted", row["sample"])
            return
        self.counts.deleted += int(await self._pool.fetchval(
            self.table.mark_deleted_sql, self.integration_id, *arrays))
