"""ShippingService RPC handlers: validation, store calls, messages. Credentials never leave."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from syncsuite.shipping.v1 import shipping_service_pb2 as pb
from syncsuite.shipping.v1 import shipping_service_pb2_grpc

from services.shipping.store import IntegrationRow, ShippingStore, SyncLogRow
from shared.errors import InvalidArgument, NotFound
from shared.paging import decode_page_token, encode_page_token, page_size
from shared.readcache import UNCHANGED, Unchanged, Versioned, VersionedReadCache
from shared.timestamps import duration, timestamp, utcnow

__all__ = ["ShippingServicer", "mask"]

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MAX_TEXT = 200
_MAX_CREDENTIAL = 512
# Credentials travel in HTTP headers (Basic auth, API-Key), which carry ASCII only.
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")
# older_than is capped: a far larger one reaches before year 1 (a datetime overflow), and no
# sync log is that old anyway.
_MAX_PRUNE_AGE = timedelta(days=36525)
# ListInventory pages kept per replica (by integration, filters and position), each checked
# against the integration's inventory data version on every read.
INVENTORY_CACHE_ENTRIES = 4096

InventoryKey = tuple[uuid.UUID, str, str, str, int, tuple[str, str, str] | None]


def mask(value: str) -> str:
    """``****`` and, for values long enough to stay secret, their last four characters."""
    return "****" + value[-4:] if len(value) >= 12 else "****"


def _uuid(field: str, value: str) -> uuid.UUID:
    if not value:
        raise InvalidArgument(field, "is required")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(field, "must be a UUID (an integration_id from ListIntegrations)"
                              ) from None


def _text(field: str, value: str, limit: int = _MAX_TEXT) -> str:
    if len(value) > limit:
        raise InvalidArgument(field, f"must be at most {limit} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise InvalidArgument(field, "must not contain NUL characters")
    return value


def _credential(field: str, value: str) -> str:
    if len(value) > _MAX_CREDENTIAL:
        raise InvalidArgument(field, f"must be at most {_MAX_CREDENTIAL} characters")
    if value != value.strip() or any(ch.isspace() for ch in value):
        raise InvalidArgument(field, "must not contain whitespace")
    if not _PRINTABLE_ASCII.fullmatch(value):
        raise InvalidArgument(field, "must be printable ASCII")
    if field == "api_key" and ":" in value:  # Basic auth sends key:secret
        raise InvalidArgument(field, "must not contain ':'")
    return value


def _decimal_text(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


def integration_message(row: IntegrationRow) -> pb.Integration:
    return pb.Integration(
        integration_id=str(row.id), name=row.name, store_id=row.store_id, active=row.active,
        api_key_hint=mask(row.api_key.reveal()), has_api_secret=bool(row.api_secret),
        has_v2_api_key=bool(row.v2_api_key), create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
        products_synced_time=timestamp(row.products_synced_at),
    )


def _log_message(row: SyncLogRow) -> pb.SyncLog:
    return pb.SyncLog(
        id=row.id, time=timestamp(row.timestamp), job_id=str(row.job_id or ""), scope=row.scope,
        full=row.full_sync, total_operations=row.total_operations,
        successful_operations=row.successful_operations,
        failed_operations=row.failed_operations,
        total_duration=duration(row.total_duration_ms / 1000),
        results=[pb.OperationLog(
            name=result["name"], ok=result["ok"], records=result["records"],
            duration=duration(result["duration_seconds"]), error=result["error"],
            details={k: str(v) for k, v in result.get("details", {}).items()},
        ) for result in row.results],
        message=row.message,
    )


def _inventory_page(rows: list[Any], size: int) -> pb.ListInventoryResponse:
    """A page from :meth:`ShippingStore.list_inventory` rows (positional columns)."""
    if rows[0][1] is None:  # nothing matched
        return pb.ListInventoryResponse()
    page, more = rows[:size], len(rows) > size
    level = pb.InventoryLevel
    levels = [level(sku=sku, warehouse_id=warehouse, location_id=location, on_hand=on_hand,
                    allocated=allocated, available=available, average_cost=average_cost,
                    currency=currency, warehouse_name=warehouse_name,
                    location_name=location_name)
              for (_, sku, warehouse, location, on_hand, allocated, available, average_cost,
                   currency, warehouse_name, location_name) in page]
    last = page[-1] if more else None
    return pb.ListInventoryResponse(
        levels=levels,
        next_page_token=encode_page_token({"sku": last[1], "w": last[2], "l": last[3]})
        if last else "",
        total_on_hand=sum(row[4] for row in page),
        total_allocated=sum(row[5] for row in page),
        total_available=sum(row[6] for row in page),
    )


def _position(token: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
    if not token:
        return None
    return decode_page_token(token, required=keys)


class ShippingServicer(shipping_service_pb2_grpc.ShippingServiceServicer):
    def __init__(
        self, store: ShippingStore, *, retention: timedelta,
        on_cache_event: Callable[[str], object] | None = None,
    ) -> None:
        self._store = store
        self._retention = retention
        self.inventory_cache: VersionedReadCache[InventoryKey, bytes] = (
            VersionedReadCache(max_entries=INVENTORY_CACHE_ENTRIES, on_event=on_cache_event))

    async def _require_integration(self, integration_id: uuid.UUID) -> None:
        if not await self._store.integration_exists(integration_id):
            raise NotFound(f"no integration {integration_id}")

    # -- integrations

    async def UpsertIntegration(
        self, request: pb.UpsertIntegrationRequest, context: Any
    ) -> pb.UpsertIntegrationResponse:
        if not _NAME.match(request.name):
            raise InvalidArgument("name", "is required: 1-64 letters, digits, '.', '_' or '-'")
        if request.store_id < 0:
            raise InvalidArgument("store_id", "must not be negative")
        credentials = {name: _credential(name, getattr(request, name))
                       for name in ("api_key", "api_secret", "v2_api_key")}
        missing = [name for name, value in credentials.items() if not value]
        if missing and await self._store.integration_by_name(request.name) is None:
            raise InvalidArgument(missing[0], "is required when creating an integration")
        row, created = await self._store.upsert_integration(
            request.name, request.store_id, credentials["api_key"], credentials["api_secret"],
            credentials["v2_api_key"],
        )
        return pb.UpsertIntegrationResponse(integration=integration_message(row), created=created)

    async def ListIntegrations(
        self, request: pb.ListIntegrationsRequest, context: Any
    ) -> pb.ListIntegrationsResponse:
        rows = await self._store.list_integrations(active_only=request.active_only)
        return pb.ListIntegrationsResponse(integrations=[integration_message(r) for r in rows])

    async def DeactivateIntegration(
        self, request: pb.DeactivateIntegrationRequest, context: Any
    ) -> pb.DeactivateIntegrationResponse:
        integration_id = _uuid("integration_id", request.integration_id)
        row = await self._store.deactivate_integration(integration_id)
        if row is None:
            raise NotFound(f"no integration {integration_id}")
        return pb.DeactivateIntegrationResponse(integration=integration_message(row))

    # -- queries

    async def ListWarehouses(
        self, request: pb.ListWarehousesRequest, context: Any
    ) -> pb.ListWarehousesResponse:
        integration_id = _uuid("integration_id", request.integration_id)
        if request.kind not in pb.WarehouseKind.values():
            raise InvalidArgument("kind", "is not a WarehouseKind")
        size = page_size(request.page_size, default=100, maximum=1000)
        position = _position(request.page_token, ("kind", "id"))
        try:
            after = (int(position["kind"]), str(position["id"])) if position else None
        except (TypeError, ValueError):
            raise InvalidArgument("page_token", "not a token from a previous response") from None
        rows = await self._store.list_warehouses(
            integration_id, kind=request.kind, include_deleted=request.include_deleted,
            limit=size + 1, after=after,
        )
        if not rows and position is None:
            await self._require_integration(integration_id)
        page, more = rows[:size], len(rows) > size
        inventory_ids = [row["id"] for row in page if row["kind"] == pb.WAREHOUSE_KIND_INVENTORY]
        locations: dict[str, list[pb.InventoryLocation]] = {}
        if inventory_ids:
            for location in await self._store.locations_of(integration_id, inventory_ids):
                locations.setdefault(location["inventory_warehouse_id"], []).append(
                    pb.InventoryLocation(location_id=location["inventory_location_id"],
                                         name=location["name"]))
        return pb.ListWarehousesResponse(
            warehouses=[pb.Warehouse(
                warehouse_id=row["id"], name=row["name"], kind=row["kind"],
                is_default=row["is_default"], locations=locations.get(row["id"], []),
                create_time=timestamp(row["created_at"]), deleted=row["deleted_at"] is not None,
            ) for row in page],
            next_page_token=encode_page_token({"kind": page[-1]["kind"], "id": page[-1]["id"]})
            if more else "",
        )

    async def ListProducts(
        self, request: pb.ListProductsRequest, context: Any
    ) -> pb.ListProductsResponse:
        integration_id = _uuid("integration_id", request.integration_id)
        sku = _text("sku", request.sku.strip())
        name_prefix = _text("name_prefix", request.name_prefix)
        size = page_size(request.page_size, default=100, maximum=1000)
        position = _position(request.page_token, ("sku", "id"))
        try:
            after = (str(position["sku"]), int(position["id"])) if position else None
        except (TypeError, ValueError):
            raise InvalidArgument("page_token", "not a token from a previous response") from None
        rows = await self._store.list_products(
            integration_id, sku=sku, name_prefix=name_prefix,
            include_deleted=request.include_deleted, limit=size + 1, after=after,
        )
        if not rows and position is None:
            await self._require_integration(integration_id)
        page, more = rows[:size], len(rows) > size
        return pb.ListProductsResponse(
            products=[pb.Product(
                product_id=str(row["product_id"]), sku=row["sku"], name=row["name"],
                price=_decimal_text(row["price"]),
                default_cost=_decimal_text(row["default_cost"]),
                weight_oz=row["weight_oz"] or 0.0, active=row["active"],
                create_time=timestamp(row["created_at"]),
                modify_time=timestamp(row["modified_at"]), deleted=row["deleted_at"] is not None,
            ) for row in page],
            next_page_token=encode_page_token({"sku": page[-1]["sku"],
                                               "id": page[-1]["product_id"]}) if more else "",
        )

    async def ListInventory(
        self, request: pb.ListInventoryRequest, context: Any
    ) -> pb.ListInventoryResponse | bytes:
        """Hot pages are kept serialized (shared/wire.py) and answered as they are."""
        integration_id = _uuid("integration_id", request.integration_id)
        sku = _text("sku", request.sku.strip())
        warehouse_id = _text("warehouse_id", request.warehouse_id.strip())
        location_id = _text("location_id", request.location_id.strip())
        size = page_size(request.page_size, default=200, maximum=2000)
        position = _position(request.page_token, ("sku", "w", "l"))
        after = (str(position["sku"]), str(position["w"]), str(position["l"])) if position else None
        key: InventoryKey = (integration_id, sku, warehouse_id, location_id, size, after)

        async def load(held: Versioned[bytes] | None) -> Versioned[bytes] | Unchanged:
            known = held.version if held is not None else None
            rows = await self._store.list_inventory(
                integration_id, sku=sku, warehouse_id=warehouse_id, location_id=location_id,
                limit=size + 1, after=after, held_version=known)  # type: ignore[arg-type]
            if not rows:
                raise NotFound(f"no integration {integration_id}")
            version = rows[0][0]
            if version == known:
                return UNCHANGED
            return Versioned(version, _inventory_page(rows, size).SerializeToString(),
                             (str(integration_id),))

        try:
            cached = await self.inventory_cache.get(key, load)
        except NotFound:
            if position is not None:  # a page past a deleted integration: nothing more
                return pb.ListInventoryResponse()
            raise
        return cached

    # -- sync logs

    async def ListSyncLogs(
        self, request: pb.ListSyncLogsRequest, context: Any
    ) -> pb.ListSyncLogsResponse:
        size = page_size(request.page_size, default=20, maximum=200)
        position = _position(request.page_token, ("t", "id"))
        try:
            before = (datetime.fromisoformat(position["t"]), int(position["id"])) \
                if position else None
        except (TypeError, ValueError):
            raise InvalidArgument("page_token", "not a token from a previous response") from None
        rows = await self._store.list_sync_logs(failed_only=request.failed_only,
                                                limit=size + 1, before=before)
        page, more = rows[:size], len(rows) > size
        return pb.ListSyncLogsResponse(
            logs=[_log_message(row) for row in page],
            next_page_token=encode_page_token({"t": page[-1].timestamp.isoformat(),
                                               "id": page[-1].id}) if more else "",
        )

    async def PruneSyncLogs(
        self, request: pb.PruneSyncLogsRequest, context: Any
    ) -> pb.PruneSyncLogsResponse:
        older_than = self._retention
        if request.HasField("older_than"):
            if request.older_than.seconds > _MAX_PRUNE_AGE.total_seconds():
                raise InvalidArgument("older_than", "must be at most 100 years")
            older_than = request.older_than.ToTimedelta()
            if older_than <= timedelta(0):
                raise InvalidArgument("older_than", "must be a positive duration")
        cutoff = utcnow() - older_than
        deleted = await self._store.prune_sync_logs(cutoff)
        return pb.PruneSyncLogsResponse(deleted=deleted, cutoff_time=timestamp(cutoff))
