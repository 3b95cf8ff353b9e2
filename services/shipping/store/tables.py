"""The synced tables as bulk-write specs (columns are named like the client's record fields).
The tables ListInventory reads bump the integration's inventory data version when they change."""

from __future__ import annotations

from services.shipping.store.bulk import BulkTable, Column

__all__ = ["INVENTORY", "INVENTORY_LOCATIONS", "INVENTORY_WAREHOUSES", "PRODUCTS", "WAREHOUSES"]

WAREHOUSES = BulkTable(
    "warehouses",
    keys=(Column("warehouse_id", "text"),),
    values=(Column("name", "text"), Column("is_default", "boolean"), Column("origin", "jsonb"),
            Column("created_at", "timestamptz")),
)
INVENTORY_WAREHOUSES = BulkTable(
    "inventory_warehouses",
    keys=(Column("inventory_warehouse_id", "text"),),
    values=(Column("name", "text"), Column("created_at", "timestamptz"),
            Column("updated_at", "timestamptz")),
    version="inventory_version",
)
INVENTORY_LOCATIONS = BulkTable(
    "inventory_locations",
    keys=(Column("inventory_location_id", "text"),),
    values=(Column("inventory_warehouse_id", "text"), Column("name", "text"),
            Column("created_at", "timestamptz"), Column("updated_at", "timestamptz")),
    version="inventory_version",
)
PRODUCTS = BulkTable(
    "products",
    keys=(Column("product_id", "bigint"),),
    values=(Column("sku", "text"), Column("name", "text"), Column("price", "numeric"),
            Column("default_cost", "numeric"), Column("weight_oz", "float8"),
            Column("active", "boolean"), Column("created_at", "timestamptz"),
            Column("modified_at", "timestamptz")),
)
INVENTORY = BulkTable(
    "inventory",
    keys=(Column("sku", "text"), Column("inventory_warehouse_id", "text"),
          Column("inventory_location_id", "text")),
    values=(Column("on_hand", "bigint"), Column("allocated", "bigint"),
            Column("available", "bigint"), Column("average_cost", "numeric"),
            Column("currency", "text")),
    version="inventory_version",
)
