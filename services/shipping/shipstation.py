"""The ShipStation client: v1 (Basic auth key:secret, 40 requests a minute per key pair, told by
``X-Rate-Limit-*`` headers) and the v2 inventory API (``API-Key`` header, 429 + Retry-After).

The same code talks to the real API and to our sandbox; only base URLs and credentials differ.
Both halves go through :class:`shared.upstream.UpstreamClient`: v1 behind a
:class:`WindowLimiter` steered by the headers (a request that would exceed the window waits for
the reset), v2 behind a :class:`TokenBucket` at the published rate; 429/5xx are retried with
full-jitter backoff honouring Retry-After.

v1 dates look like ``2014-10-21T08:11:43.8800000``: seven fraction digits and no zone, in
Pacific time. :func:`parse_v1_date` / :func:`format_v1_date` convert them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

import httpx

from shared.config import Secret
from shared.upstream import (
    RetryPolicy,
    TokenBucket,
    UpstreamBadResponse,
    UpstreamClient,
    WindowLimiter,
    create_http_client,
)

__all__ = [
    "PACIFIC",
    "V1_MAX_PAGE_SIZE",
    "Credentials",
    "InventoryLocation",
    "InventoryWarehouse",
    "Limits",
    "Page",
    "Product",
    "ShipStationClient",
    "StockLevel",
    "Store",
    "Warehouse",
    "format_v1_date",
    "parse_v1_date",
    "parse_v2_date",
]

PACIFIC = ZoneInfo("America/Los_Angeles")
V1_MAX_PAGE_SIZE = 500

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


# --------------------------------------------------------------------------- dates


def parse_v1_date(value: str | None) -> datetime | None:
    """A v1 date (Pacific wall time, no zone, up to 7 fraction digits) as an aware UTC time."""
    if not value:
        return None
    text = value.strip().replace(" ", "T")
    if "." in text:
        head, fraction = text.split(".", 1)
        text = f"{head}.{(fraction + '000000')[:6]}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=PACIFIC)
    return parsed.astimezone(UTC)


def format_v1_date(moment: datetime) -> str:
    """``moment`` as v1 writes dates: Pacific wall time with seven fraction digits."""
    local = moment.astimezone(PACIFIC)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond:06d}0"


def parse_v2_date(value: str | None) -> datetime | None:
    """A v2 ISO 8601 date (with zone; UTC when it has none)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Warehouse:
    warehouse_id: str
    name: str
    is_default: bool
    origin: dict[str, Any]
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class Store:
    store_id: int
    name: str
    marketplace: str
    active: bool


@dataclass(frozen=True, slots=True)
class Product:
    product_id: int
    sku: str
    name: str
    price: Decimal | None
    default_cost: Decimal | None
    weight_oz: float | None
    active: bool
    created_at: datetime | None
    modified_at: datetime | None


@dataclass(frozen=True, slots=True)
class InventoryWarehouse:
    inventory_warehouse_id: str
    name: str
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class InventoryLocation:
    inventory_location_id: str
    inventory_warehouse_id: str
    name: str
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class StockLevel:
    sku: str
    inventory_warehouse_id: str
    inventory_location_id: str
    on_hand: int
    allocated: int
    available: int
    average_cost: Decimal | None
    currency: str


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing and the listing's size as that response reported it (``total``;
    None when it did not say): what tells whether a paged read saw everything."""

    items: list[T]
    total: int | None


def _reported(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _has_next(body: dict[str, Any], page: int, count: int, size: int) -> bool:
    """Whether a page follows ``page``: by ``pages`` when the response has it, else by its
    ``links.next``, else by ``total``, else by whether the page was full. A response without
    ``pages`` is not the last page for that reason alone."""
    if count == 0:
        return False
    pages = _reported(body, "pages")
    if pages is not None:
        return page < pages
    links = body.get("links")
    if isinstance(links, dict):
        return bool(links.get("next"))
    total = _reported(body, "total")
    if total is not None:
        return page * size < total
    return count >= size


def _reaches_before(products: list[Product], moment: datetime | None) -> bool:
    return moment is not None and any(
        p.modified_at is not None and p.modified_at < moment for p in products)


def _warehouse(item: dict[str, Any]) -> Warehouse:
    return Warehouse(
        warehouse_id=str(item["warehouseId"]), name=str(item.get("warehouseName") or ""),
        is_default=bool(item.get("isDefault")), origin=dict(item.get("originAddress") or {}),
        created_at=parse_v1_date(item.get("createDate")),
    )


def _product(item: dict[str, Any]) -> Product:
    weight = item.get("weightOz")
    return Product(
        product_id=int(item["productId"]), sku=str(item.get("sku") or ""),
        name=str(item.get("name") or ""), price=_decimal(item.get("price")),
        default_cost=_decimal(item.get("defaultCost")),
        weight_oz=float(weight) if weight is not None else None,
        active=bool(item.get("active", True)),
        created_at=parse_v1_date(item.get("createDate")),
        modified_at=parse_v1_date(item.get("modifyDate")),
    )


def _inventory_warehouse(item: dict[str, Any]) -> InventoryWarehouse:
    return InventoryWarehouse(
        inventory_warehouse_id=str(item["inventory_warehouse_id"]),
        name=str(item.get("name") or ""),
        created_at=parse_v2_date(item.get("created_at")),
        updated_at=parse_v2_date(item.get("updated_at")),
    )


def _inventory_location(item: dict[str, Any]) -> InventoryLocation:
    return InventoryLocation(
        inventory_location_id=str(item["inventory_location_id"]),
        inventory_warehouse_id=str(item.get("inventory_warehouse_id") or ""),
        name=str(item.get("name") or ""),
        created_at=parse_v2_date(item.get("created_at")),
        updated_at=parse_v2_date(item.get("updated_at")),
    )


def _stock_level(item: dict[str, Any]) -> StockLevel:
    cost = item.get("average_cost") or {}
    return StockLevel(
        sku=str(item["sku"]), inventory_warehouse_id=str(item.get("inventory_warehouse_id") or ""),
        inventory_location_id=str(item.get("inventory_location_id") or ""),
        on_hand=int(item.get("on_hand") or 0), allocated=int(item.get("allocated") or 0),
        available=int(item.get("available") or 0), average_cost=_decimal(cost.get("amount")),
        currency=str(cost.get("currency") or ""),
    )


# --------------------------------------------------------------------------- client


@dataclass(frozen=True)
class Credentials:
    api_key: Secret
    api_secret: Secret
    v2_api_key: Secret


@dataclass(frozen=True)
class Limits:
    v1_limit: int = 40
    v1_window: float = 60.0
    v1_margin: float = 1.0
    v2_per_minute: float = 200.0
    v2_burst: float = 1.0
    page_size: int = V1_MAX_PAGE_SIZE
    v2_page_size: int = 500
    timeout: float = 30.0
    max_attempts: int = 5


def _shape_error(upstream: str, what: str) -> UpstreamBadResponse:
    return UpstreamBadResponse(upstream, f"unexpected response shape: {what}")


class ShipStationClient:
    """One ShipStation account (key pair): its v1 and v2 halves, each with its own limiter."""

    def __init__(self, v1: UpstreamClient, v2: UpstreamClient, limits: Limits) -> None:
        self.v1 = v1
        self.v2 = v2
        self.limits = limits

    @classmethod
    def create(
        cls,
        credentials: Credentials,
        *,
        v1_url: str,
        v2_url: str,
        limits: Limits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> ShipStationClient:
        limits = limits or Limits()
        retry = RetryPolicy(max_attempts=limits.max_attempts, base_delay=0.5, max_delay=30.0)
        v1_http = create_http_client(
            v1_url, timeout=limits.timeout, transport=transport,
            auth=(credentials.api_key.reveal(), credentials.api_secret.reveal()),
        )
        v2_http = create_http_client(
            v2_url, timeout=limits.timeout, transport=transport,
            headers={"API-Key": credentials.v2_api_key.reveal()},
        )
        v1 = UpstreamClient(
            "shipstation-v1", v1_http,
            WindowLimiter(limits.v1_limit, limits.v1_window, margin=limits.v1_margin,
                          clock=clock, sleep=sleep),
            retry, concurrency=4, attempt_timeout=limits.timeout, clock=clock, sleep=sleep,
        )
        v2 = UpstreamClient(
            "shipstation-v2", v2_http,
            TokenBucket(limits.v2_per_minute / 60.0, limits.v2_burst, clock=clock, sleep=sleep),
            retry, concurrency=4, attempt_timeout=limits.timeout, clock=clock, sleep=sleep,
        )
        return cls(v1, v2, limits)

    @property
    def requests(self) -> int:
        """Attempts sent so far, both APIs."""
        return self.v1.stats.requests + self.v2.stats.requests

    async def aclose(self) -> None:
        await self.v1.aclose()
        await self.v2.aclose()

    # -- v1

    async def warehouses(self) -> list[Warehouse]:
        body = await self.v1.get_json("/warehouses")
        if not isinstance(body, list):
            raise _shape_error(self.v1.name, "/warehouses is not an array")
        return [_warehouse(item) for item in body]

    async def stores(self) -> list[Store]:
        body = await self.v1.get_json("/stores", params={"showInactive": "true"})
        if not isinstance(body, list):
            raise _shape_error(self.v1.name, "/stores is not an array")
        return [
            Store(int(item["storeId"]), str(item.get("storeName") or ""),
                  str(item.get("marketplaceName") or ""), bool(item.get("active", True)))
            for item in body
        ]

    async def product_pages(
        self, modified_since: datetime | None = None
    ) -> AsyncIterator[Page[Product]]:
        """Pages of products (inactive ones too), most recently modified first, so that an
        edit or an addition during the read moves a product to the front: later products are
        then read twice, never skipped, and the moved one is newer than this run, so the next
        incremental read gets it. (A deletion shifts later products back; it also changes
        ``total``, which the caller checks before marking anything deleted.)

        With ``modified_since``, paging stops after the first page that reaches products
        modified before it. ``startDate`` is not sent: ShipStation may read it as a creation
        date, which would hide edits of older products."""
        size = min(self.limits.page_size, V1_MAX_PAGE_SIZE)
        params = {"pageSize": str(size), "showInactive": "true", "sortBy": "ModifyDate",
                  "sortDir": "DESC"}
        page = 1
        while True:
            body = await self.v1.get_json("/products", params={**params, "page": str(page)})
            if not isinstance(body, dict) or not isinstance(body.get("products"), list):
                raise _shape_error(self.v1.name, "/products has no products array")
            products = [_product(item) for item in body["products"]]
            yield Page(products, _reported(body, "total"))
            if (not _has_next(body, page, len(products), size)
                    or _reaches_before(products, modified_since)):
                return
            page += 1

    # -- v2

    async def _v2_pages(
        self, path: str, key: str, convert: Callable[[dict[str, Any]], T],
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[Page[T]]:
        size = self.limits.v2_page_size
        page = 1
        while True:
            query = {**(params or {}), "page": str(page), "page_size": str(size)}
            body = await self.v2.get_json(path, params=query)
            if not isinstance(body, dict) or not isinstance(body.get(key), list):
                raise _shape_error(self.v2.name, f"{path} has no {key} array")
            items = body[key]
            yield Page([convert(item) for item in items], _reported(body, "total"))
            if not _has_next(body, page, len(items), size):
                return
            page += 1

    def inventory_warehouse_pages(self) -> AsyncIterator[Page[InventoryWarehouse]]:
        return self._v2_pages("/v2/inventory_warehouses", "inventory_warehouses",
                              _inventory_warehouse)

    def inventory_location_pages(self) -> AsyncIterator[Page[InventoryLocation]]:
        return self._v2_pages("/v2/inventory_locations", "inventory_locations",
                              _inventory_location)

    def inventory_pages(self, sku: str | None = None) -> AsyncIterator[Page[StockLevel]]:
        """Stock levels per sku and location, page by page (of one sku when given)."""
        return self._v2_pages("/v2/inventory", "inventory", _stock_level,
                              {"sku": sku} if sku else None)
