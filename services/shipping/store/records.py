"""SQL for integrations, the read side (warehouses, products, inventory) and sync logs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.config import Secret
from shared.sealing import SEALED_PREFIX, Sealer

__all__ = ["CREDENTIAL_COLUMNS", "IntegrationRow", "ShippingStore", "SyncLogRow"]


@dataclass(frozen=True)
class IntegrationRow:
    id: uuid.UUID
    name: str
    store_id: int
    api_key: Secret
    api_secret: Secret
    v2_api_key: Secret
    active: bool
    created_at: datetime
    updated_at: datetime
    products_synced_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record, sealer: Sealer) -> IntegrationRow:
        def opened(column: str) -> Secret:
            # a value in clear is still read: an older replica may write one during a rolling
            # upgrade, and the next start of this version seals it
            stored: str = row[column]
            return Secret(sealer.unseal(stored, column) if sealer.is_sealed(stored) else stored)

        return cls(
            id=row["id"], name=row["name"], store_id=row["store_id"],
            api_key=opened("api_key"), api_secret=opened("api_secret"),
            v2_api_key=opened("v2_api_key"), active=row["active"],
            created_at=row["created_at"], updated_at=row["updated_at"],
            products_synced_at=row["products_synced_at"],
        )

    @property
    def fingerprint(self) -> tuple[str, str, str]:
        """Changes when the credentials change (keys clients by credentials, in memory only)."""
        return (self.api_key.reveal(), self.api_secret.reveal(), self.v2_api_key.reveal())


@dataclass(frozen=True)
class SyncLogRow:
    id: int
    timestamp: datetime
    job_id: uuid.UUID | None
    scope: str
    full_sync: bool
    total_operations: int
    successful_operations: int
    failed_operations: int
    total_duration_ms: int
    results: list[dict[str, Any]]
    message: str


_INTEGRATION = ("id, name, store_id, api_key, api_secret, v2_api_key, active, created_at,"
                " updated_at, products_synced_at")
_LOG = ('id, "timestamp", job_id, scope, full_sync, total_operations, successful_operations,'
        " failed_operations, total_duration_ms, results, message")


def like_prefix(text: str) -> str:
    """A LIKE pattern matching strings that start with ``text`` literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class _Where:
    """AND-ed conditions from fixed SQL fragments, values always as $n parameters."""

    def __init__(self, integration_id: uuid.UUID, column: str = "integration_id") -> None:
        self.args: list[Any] = [integration_id]
        self.conditions = [f"{column} = $1"]

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, fragment: str, *values: Any) -> None:
        self.conditions.append(fragment.format(*(self.param(value) for value in values)))

    @property
    def sql(self) -> str:
        return " AND ".join(self.conditions)


CREDENTIAL_COLUMNS = ("api_key", "api_secret", "v2_api_key")


class ShippingStore:
    """``sealer`` seals the ShipStation credentials in the integrations table (the column's
    name is the purpose): PostgreSQL, its backups and its logs never hold them in clear."""

    def __init__(self, pool: asyncpg.Pool, sealer: Sealer) -> None:
        self.pool = pool
        self._sealer = sealer

    def _sealed(self, value: str, column: str) -> str:
        return self._sealer.seal(value, column) if value else ""  # "": keep the stored one

    async def seal_stored_credentials(self) -> int:
        """Seals credentials stored in clear (before sealing existed); how many rows."""
        async with self.pool.acquire() as connection, connection.transaction():
            # only rows still holding a value in clear: a normal start reads and locks nothing
            in_clear = " OR ".join(f"({c} <> '' AND {c} NOT LIKE '{SEALED_PREFIX}%')"
                                   for c in CREDENTIAL_COLUMNS)
            rows = await connection.fetch(
                f"SELECT id, {', '.join(CREDENTIAL_COLUMNS)} FROM integrations"
                f" WHERE {in_clear} FOR UPDATE")
            for row in rows:  # each has a column in clear (the WHERE above)
                clear = [c for c in CREDENTIAL_COLUMNS
                         if row[c] and not self._sealer.is_sealed(row[c])]
                await connection.execute(
                    "UPDATE integrations SET "
                    + ", ".join(f"{c} = ${n}" for n, c in enumerate(clear, start=2))
                    + " WHERE id = $1", row["id"], *(self._sealed(row[c], c) for c in clear))
        return len(rows)

    # -- integrations

    async def get_integration(self, integration_id: uuid.UUID) -> IntegrationRow | None:
        row = await self.pool.fetchrow(
            f"SELECT {_INTEGRATION} FROM integrations WHERE id = $1", integration_id)
        return IntegrationRow.from_row(row, self._sealer) if row else None

    async def integration_by_name(self, name: str) -> IntegrationRow | None:
        row = await self.pool.fetchrow(
            f"SELECT {_INTEGRATION} FROM integrations WHERE name = $1", name)
        return IntegrationRow.from_row(row, self._sealer) if row else None

    async def upsert_integration(
        self, name: str, store_id: int, api_key: str, api_secret: str, v2_api_key: str
    ) -> tuple[IntegrationRow, bool]:
        """Creates or updates by name (reactivating it); empty credentials keep the stored
        ones. Returns the row and whether it was created."""
        row = await self.pool.fetchrow(
            f"INSERT INTO integrations (id, name, store_id, api_key, api_secret, v2_api_key)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (name) DO UPDATE SET store_id = EXCLUDED.store_id,"
            " api_key = COALESCE(NULLIF(EXCLUDED.api_key, ''), integrations.api_key),"
            " api_secret = COALESCE(NULLIF(EXCLUDED.api_secret, ''), integrations.api_secret),"
            " v2_api_key = COALESCE(NULLIF(EXCLUDED.v2_api_key, ''), integrations.v2_api_key),"
            " active = true, updated_at = now()"
            f" RETURNING {_INTEGRATION}, (xmax = 0) AS created",
            uuid.uuid4(), name, store_id, self._sealed(api_key, "api_key"),
            self._sealed(api_secret, "api_secret"), self._sealed(v2_api_key, "v2_api_key"),
        )
        return IntegrationRow.from_row(row, self._sealer), bool(row["created"])

    async def list_integrations(self, *, active_only: bool) -> list[IntegrationRow]:
        rows = await self.pool.fetch(
            f"SELECT {_INTEGRATION} FROM integrations WHERE active OR NOT $1"
            " ORDER BY active DESC, name", active_only)
        return [IntegrationRow.from_row(row, self._sealer) for row in rows]

    async def deactivate_integration(self, integration_id: uuid.UUID) -> IntegrationRow | None:
        row = await self.pool.fetchrow(
            f"UPDATE integrations SET active = false, updated_at = now() WHERE id = $1"
            f" RETURNING {_INTEGRATION}", integration_id)
        return IntegrationRow.from_row(row, self._sealer) if row else None

    async def set_products_synced(self, integration_id: uuid.UUID, when: datetime) -> None:
        await self.pool.execute(
            "UPDATE integrations SET products_synced_at = $2 WHERE id = $1", integration_id, when)

    async def count_active_integrations(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM integrations WHERE active"))

    async def integration_exists(self, integration_id: uuid.UUID) -> bool:
        return bool(await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM integrations WHERE id = $1)", integration_id))

    # -- read side

    async def list_warehouses(
        self, integration_id: uuid.UUID, *, kind: int, include_deleted: bool, limit: int,
        after: tuple[int, str] | None,
    ) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT kind, id, name, is_default, created_at, deleted_at FROM ("
            " SELECT 1 AS kind, warehouse_id AS id, name, is_default, created_at, deleted_at"
            "  FROM warehouses WHERE integration_id = $1"
            " UNION ALL"
            " SELECT 2, inventory_warehouse_id, name, false, created_at, deleted_at"
            "  FROM inventory_warehouses WHERE integration_id = $1) w"
            " WHERE ($2 = 0 OR kind = $2) AND ($3 OR deleted_at IS NULL)"
            " AND ($4::int IS NULL OR (kind, id) > ($4, $5::text))"
            " ORDER BY kind, id LIMIT $6",
            integration_id, kind, include_deleted, after[0] if after else None,
            after[1] if after else None, limit,
        )

    async def locations_of(
        self, integration_id: uuid.UUID, warehouse_ids: list[str]
    ) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT inventory_location_id, inventory_warehouse_id, name FROM inventory_locations"
            " WHERE integration_id = $1 AND inventory_warehouse_id = ANY($2::text[])"
            " AND deleted_at IS NULL ORDER BY inventory_warehouse_id, name, inventory_location_id",
            integration_id, warehouse_ids,
        )

    async def list_products(
        self, integration_id: uuid.UUID, *, sku: str, name_prefix: str, include_deleted: bool,
        limit: int, after: tuple[str, int] | None,
    ) -> list[asyncpg.Record]:
        # Only the filters asked for are in the statement, so each variant gets a plan that
        # uses its index (a generic plan of "$2 = '' OR sku = $2" scans the table).
        where = _Where(integration_id)
        if sku:
            where.add("sku = {}", sku)
        if name_prefix:
            where.add("lower(name) LIKE lower({})", like_prefix(name_prefix))
        if not include_deleted:
            where.conditions.append("deleted_at IS NULL")
        if after:
            where.add("(sku, product_id) > ({}, {})", *after)
        return await self.pool.fetch(
            "SELECT product_id, sku, name, price, default_cost, weight_oz, active, created_at,"
            f" modified_at, deleted_at FROM products WHERE {where.sql}"
            f" ORDER BY sku, product_id LIMIT {where.param(limit)}", *where.args,
        )

    async def list_inventory(
        self, integration_id: uuid.UUID, *, sku: str, warehouse_id: str, location_id: str,
        limit: int, after: tuple[str, str, str] | None, held_version: int | None = None,
    ) -> list[asyncpg.Record]:
        """One round trip: the integration's inventory data version and, unless it is
        ``held_version``, the stock rows (columns inventory_version, sku, warehouse_id,
        location_id, on_hand, allocated, available, average_cost as text ('' = none),
        currency, warehouse_name, location_name). One row with NULL stock columns: the version
        is unchanged or nothing matched; no rows: no such integration."""
        where = _Where(integration_id, "i.integration_id")
        where.conditions.append("i.deleted_at IS NULL")
        for column, value in (("i.sku", sku), ("i.inventory_warehouse_id", warehouse_id),
                              ("i.inventory_location_id", location_id)):
            if value:
                where.add(column + " = {}", value)
        if after:
            where.add("(i.sku, i.inventory_warehouse_id, i.inventory_location_id)"
                      " > ({}, {}, {})", *after)
        where.add("g.inventory_version IS DISTINCT FROM {}::bigint", held_version)
        # OFFSET 0 keeps the subquery apart, so the version test gates it (a one-time filter).
        return await self.pool.fetch(
            "SELECT g.inventory_version, s.* FROM integrations g LEFT JOIN LATERAL ("
            " SELECT i.sku, i.inventory_warehouse_id, i.inventory_location_id, i.on_hand,"
            " i.allocated, i.available, coalesce(trim_scale(i.average_cost)::text, '')"
            " AS average_cost, i.currency,"
            " coalesce(w.name, '') AS warehouse_name, coalesce(l.name, '') AS location_name"
            " FROM inventory i"
            " LEFT JOIN inventory_warehouses w ON w.integration_id = i.integration_id"
            "  AND w.inventory_warehouse_id = i.inventory_warehouse_id"
            " LEFT JOIN inventory_locations l ON l.integration_id = i.integration_id"
            "  AND l.inventory_location_id = i.inventory_location_id"
            f" WHERE {where.sql}"
            " ORDER BY i.sku, i.inventory_warehouse_id, i.inventory_location_id"
            f" LIMIT {where.param(limit)} OFFSET 0) s ON true WHERE g.id = $1", *where.args,
        )

    # -- sync logs

    async def add_sync_log(
        self, *, job_id: str, scope: str, full: bool, results: list[dict[str, Any]],
        duration_ms: int, message: str,
    ) -> int:
        failed = sum(1 for result in results if not result["ok"])
        return int(await self.pool.fetchval(
            "INSERT INTO sync_logs (job_id, scope, full_sync, total_operations,"
            " successful_operations, failed_operations, total_duration_ms, results, message)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            uuid.UUID(job_id), scope, full, len(results), len(results) - failed, failed,
            duration_ms, results, message,
        ))

    async def list_sync_logs(
        self, *, failed_only: bool, limit: int, before: tuple[datetime, int] | None
    ) -> list[SyncLogRow]:
        rows = await self.pool.fetch(
            f"SELECT {_LOG} FROM sync_logs WHERE (NOT $1 OR failed_operations > 0)"
            ' AND ($2::timestamptz IS NULL OR ("timestamp", id) < ($2, $3::bigint))'
            ' ORDER BY "timestamp" DESC, id DESC LIMIT $4',
            failed_only, before[0] if before else None, before[1] if before else None, limit,
        )
        return [SyncLogRow(**dict(row)) for row in rows]

    async def prune_sync_logs(self, cutoff: datetime) -> int:
        status = await self.pool.execute('DELETE FROM sync_logs WHERE "timestamp" < $1', cutoff)
        return int(status.split()[-1])
