"""The shipping service's PostgreSQL access: every SQL statement lives in this package."""

from services.shipping.store.bulk import BulkTable, BulkWriter, Column
from services.shipping.store.records import IntegrationRow, ShippingStore, SyncLogRow, like_prefix
from services.shipping.store.tables import (
    INVENTORY,
    INVENTORY_LOCATIONS,
    INVENTORY_WAREHOUSES,
    PRODUCTS,
    WAREHOUSES,
)

__all__ = [
    "INVENTORY",
    "INVENTORY_LOCATIONS",
    "INVENTORY_WAREHOUSES",
    "PRODUCTS",
    "WAREHOUSES",
    "BulkTable",
    "BulkWriter",
    "Column",
    "IntegrationRow",
    "ShippingStore",
    "SyncLogRow",
    "like_prefix",
]
