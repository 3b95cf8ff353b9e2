"""The ShipStation sandbox's accounts and their data: deterministic from a seed, changed by
mutation rounds (edits, deletions, additions, stock moves) so that successive syncs see news.

Account ``n`` (1-based) answers to v1 key ``sandbox-key-n`` / secret ``sandbox-secret-n`` and
v2 ``API-Key`` ``sandbox-v2-key-n``; it has one store (id ``10000 + n``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.shipping.shipstation import format_v1_date
from shared.sandbox import city, company_name, mutation_round, price, product_name, rng_for

__all__ = ["START_DATE_MEANINGS", "Account", "AccountSpec", "SandboxConfig", "credentials_of"]

EPOCH_START = datetime(2021, 1, 1, tzinfo=UTC)
EPOCH_END = datetime(2024, 12, 31, tzinfo=UTC)
# SandboxConfig.start_date_means -> the product field startDate/endDate filter on
START_DATE_MEANINGS = {"modified": "modifyDate", "created": "createDate"}


def credentials_of(number: int) -> tuple[str, str, str]:
    """(v1 key, v1 secret, v2 API key) of sandbox account ``number``."""
    return f"sandbox-key-{number}", f"sandbox-secret-{number}", f"sandbox-v2-key-{number}"


@dataclass(frozen=True)
class AccountSpec:
    number: int
    products: int = 2000
    warehouses: int = 4
    locations_per_warehouse: int = 3
    stock_rows_per_product: int = 2


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "")
    return int(raw) if raw.strip() else default


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "")
    return float(raw) if raw.strip() else default


@dataclass(frozen=True)
class SandboxConfig:
    accounts: tuple[AccountSpec, ...] = (AccountSpec(1), AccountSpec(2), AccountSpec(3))
    seed: int = 42
    v1_limit: int = 40
    v1_window: float = 60.0
    v2_rate_per_minute: float = 200.0
    v2_burst: float = 10.0
    v1_max_page_size: int = 500
    v2_max_page_size: int = 500
    # Seconds between automatic mutation rounds (0: only POST /_sandbox/mutate).
    mutate_every: float = 0.0
    mutation_share: float = 0.02
    # What /products' startDate/endDate filter on: "modified" (modifyDate) or "created"
    # (createDate, as ShipStation may read them).
    start_date_means: str = "modified"
    # False: v2 envelopes leave out "pages" (a client must page on by links.next or total).
    v2_reports_pages: bool = True

    def __post_init__(self) -> None:
        if self.start_date_means not in START_DATE_MEANINGS:
            raise ValueError(f"start_date_means must be one of {', '.join(START_DATE_MEANINGS)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SandboxConfig:
        """``SHIPSTATION_SANDBOX_*`` variables (see services/shipping/README.md)."""
        environ = os.environ if environ is None else environ
        spec = AccountSpec(
            0,
            products=_int(environ, "SHIPSTATION_SANDBOX_PRODUCTS", 2000),
            warehouses=_int(environ, "SHIPSTATION_SANDBOX_WAREHOUSES", 4),
            locations_per_warehouse=_int(environ, "SHIPSTATION_SANDBOX_LOCATIONS", 3),
            stock_rows_per_product=_int(environ, "SHIPSTATION_SANDBOX_STOCK_ROWS", 2),
        )
        count = _int(environ, "SHIPSTATION_SANDBOX_ACCOUNTS", 3)
        return cls(
            accounts=tuple(replace(spec, number=n) for n in range(1, count + 1)),
            seed=_int(environ, "SHIPSTATION_SANDBOX_SEED", 42),
            v1_limit=_int(environ, "SHIPSTATION_SANDBOX_V1_LIMIT", 40),
            v1_window=_float(environ, "SHIPSTATION_SANDBOX_V1_WINDOW", 60.0),
            v2_rate_per_minute=_float(environ, "SHIPSTATION_SANDBOX_V2_RATE_PER_MINUTE", 200.0),
            v2_burst=_float(environ, "SHIPSTATION_SANDBOX_V2_BURST", 10.0),
            mutate_every=_float(environ, "SHIPSTATION_SANDBOX_MUTATE_SECONDS", 0.0),
            mutation_share=_float(environ, "SHIPSTATION_SANDBOX_MUTATION_SHARE", 0.02),
            start_date_means=environ.get("SHIPSTATION_SANDBOX_START_DATE_MEANS") or "modified",
            v2_reports_pages=_int(environ, "SHIPSTATION_SANDBOX_V2_REPORTS_PAGES", 1) != 0,
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Account:
    """One ShipStation account's data, as the sandbox serves it."""

    spec: AccountSpec
    seed: int
    warehouses: list[dict[str, Any]] = field(default_factory=list)
    inventory_warehouses: list[dict[str, Any]] = field(default_factory=list)
    inventory_locations: list[dict[str, Any]] = field(default_factory=list)
    products: dict[int, dict[str, Any]] = field(default_factory=dict)
    # (sku, location id) -> stock row
    stock: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    mutation_share: float = 0.02
    rounds: int = 0
    _next_product: int = 0
    _sorted: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return self.spec.number

    @property
    def store(self) -> dict[str, Any]:
        rng = rng_for(self.seed, "store", self.number)
        return {"storeId": 10000 + self.number, "storeName": f"{company_name(rng)} Store",
                "marketplaceId": 0, "marketplaceName": "ShipStation", "active": True,
                "createDate": format_v1_date(EPOCH_START)}

    @classmethod
    def generate(cls, spec: AccountSpec, seed: int, mutation_share: float = 0.02) -> Account:
        account = cls(spec, seed, mutation_share=mutation_share)
        n = spec.number
        for w in range(spec.warehouses):
            rng = rng_for(seed, "warehouse", n, w)
            place = city(rng)
            created = EPOCH_START + timedelta(days=w)
            account.warehouses.append({
                "warehouseId": 100000 * n + w, "warehouseName": f"{place.name} DC {w + 1}",
                "originAddress": {"name": f"{place.name} DC", "city": place.name,
                                  "country": place.country_code, "street1": f"{w + 1} Dock St"},
                "returnAddress": None, "createDate": format_v1_date(created), "isDefault": w == 0,
            })
            warehouse_id = f"se-iw-{n}-{w}"
            account.inventory_warehouses.append({
                "inventory_warehouse_id": warehouse_id, "name": f"{place.name} Stock {w + 1}",
                "created_at": _iso(created), "updated_at": _iso(created),
            })
            for j in range(spec.locations_per_warehouse):
                account.inventory_locations.append({
                    "inventory_location_id": f"se-il-{n}-{w}-{j}",
                    "inventory_warehouse_id": warehouse_id,
                    "name": f"Aisle {j + 1}", "created_at": _iso(created),
                    "updated_at": _iso(created),
                })
        for _ in range(spec.products):
            account.add_product(None)
        return account

    def add_product(self, when: datetime | None, sku: str | None = None) -> int:
        """A new product (created ``when``, or at a seeded time in the past) with its stock
        rows; its id. ``sku`` chooses where it sorts (tests), else one is made up."""
        i = self._next_product
        self._next_product += 1
        n = self.number
        rng = rng_for(self.seed, "product", n, i)
        created = when or EPOCH_START + (EPOCH_END - EPOCH_START) * rng.random()
        letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(3))
        product_id = n * 10_000_000 + i
        sku = sku or f"{letters}{n}-{i:06d}"
        self.products[product_id] = {
            "productId": product_id, "sku": sku, "name": product_name(rng),
            "price": float(price(rng, "5.00", "300.00")),
            "defaultCost": float(price(rng, "1.00", "100.00")),
            "weightOz": round(rng.uniform(1, 200), 1), "active": True,
            "createDate": format_v1_date(created),
            "modifyDate": format_v1_date(created + timedelta(hours=rng.randint(0, 5000))
                                         if when is None else created),
        }
        self._sorted.clear()
        locations = self.inventory_locations
        if not locations:
            return product_id
        rows = min(self.spec.stock_rows_per_product, len(locations))
        stride = max(1, len(locations) // max(1, rows))
        for k in range(rows):
            location = locations[(i + k * stride) % len(locations)]
            on_hand = rng.randint(0, 500)
            allocated = rng.randint(0, on_hand)
            self.stock[(sku, location["inventory_location_id"])] = {
                "sku": sku, "on_hand": on_hand, "allocated": allocated,
                "available": on_hand - allocated,
                "average_cost": {"amount": float(price(rng, "1.00", "100.00")),
                                 "currency": "USD"},
                "inventory_warehouse_id": location["inventory_warehouse_id"],
                "inventory_location_id": location["inventory_location_id"],
            }
        return product_id

    def edit_product(self, product_id: int, when: datetime) -> None:
        product = self.products[product_id]
        product["price"] = round(product["price"] * 1.05 + 0.01, 2)
        product["modifyDate"] = format_v1_date(when)
        self._sorted.clear()

    def delete_product(self, product_id: int) -> None:
        """The product and its stock rows are gone."""
        sku = self.products.pop(product_id)["sku"]
        for key in [key for key in self.stock if key[0] == sku]:
            del self.stock[key]
        self._sorted.clear()

    def mutate(self, when: datetime) -> dict[str, int]:
        """One round of upstream changes: some products edited, a few deleted and added, some
        stock levels moved. Returns what changed."""
        self.rounds += 1
        share = self.mutation_share
        edited = mutation_round(list(self.products), share, self.rounds, f"{self.seed}-p")
        deleted = edited[: max(0, len(edited) // 10)]
        for product_id in edited[len(deleted):]:
            self.edit_product(product_id, when)
        for product_id in deleted:
            self.delete_product(product_id)
        for _ in deleted:
            self.add_product(when)
        moved = mutation_round(list(self.stock), share, self.rounds, f"{self.seed}-s")
        for key in moved:
            row = self.stock[key]
            row["on_hand"] += 7
            row["available"] = row["on_hand"] - row["allocated"]
        self._sorted.clear()
        return {"edited": len(edited) - len(deleted), "deleted": len(deleted),
                "added": len(deleted), "stock_moved": len(moved)}

    def products_sorted(self, by: str) -> list[dict[str, Any]]:
        """By ``by`` (ModifyDate, SKU; else productId), ascending."""
        if by not in self._sorted:
            items = list(self.products.values())
            if by == "ModifyDate":
                items.sort(key=lambda p: (p["modifyDate"], p["productId"]))
            elif by == "SKU":
                items.sort(key=lambda p: p["sku"])
            else:
                items.sort(key=lambda p: p["productId"])
            self._sorted[by] = items
        return self._sorted[by]

    def stock_sorted(self) -> list[dict[str, Any]]:
        if "stock" not in self._sorted:
            self._sorted["stock"] = [self.stock[key] for key in sorted(self.stock)]
        return self._sorted["stock"]
