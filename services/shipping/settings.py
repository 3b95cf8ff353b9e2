"""The shipping service's settings (ShipStation endpoints, credentials, limits, sync options)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Secret, env, one_of

__all__ = ["DATA_SOURCES", "ShippingSettings"]

DATA_SOURCES = ("auto", "sandbox", "real")


@dataclass(frozen=True)
class ShippingSettings:
    data_source: str = env(
        "SHIPSTATION_DATA_SOURCE", default="auto", parse=one_of(*DATA_SOURCES),
        help="real | sandbox | auto (real when SHIPSTATION_API_KEY is set)",
    )
    sandbox_url: str = env("SHIPSTATION_SANDBOX_URL", default="http://127.0.0.1:8093")
    v1_url: str = env("SHIPSTATION_V1_URL", default="https://ssapi.shipstation.com")
    v2_url: str = env("SHIPSTATION_V2_URL", default="https://api.shipstation.com")
    # Optional bootstrap: with these set, an integration named "default" is upserted at start.
    api_key: Secret | None = env("SHIPSTATION_API_KEY", default=None)
    api_secret: Secret | None = env("SHIPSTATION_API_SECRET", default=None)
    v2_api_key: Secret | None = env("SHIPSTATION_V2_API_KEY", default=None)
    v1_rate_limit: int = env("SHIPSTATION_V1_RATE_LIMIT", default=40, help="v1 requests/window")
    v1_rate_window: float = env("SHIPSTATION_V1_RATE_WINDOW", default=60.0, help="seconds")
    v1_rate_margin: float = env(
        "SHIPSTATION_V1_RATE_MARGIN", default=1.0,
        help="seconds added to X-Rate-Limit-Reset before a new window is used",
    )
    v2_rate_per_minute: float = env("SHIPSTATION_V2_RATE_PER_MINUTE", default=200.0)
    v2_burst: float = env("SHIPSTATION_V2_BURST", default=1.0, help="v2 requests sent at once")
    page_size: int = env("SHIPSTATION_PAGE_SIZE", default=500, help="v1 pageSize (max 500)")
    v2_page_size: int = env("SHIPSTATION_V2_PAGE_SIZE", default=500, help="v2 page_size")
    timeout_seconds: float = env("SHIPSTATION_TIMEOUT", default=30.0)
    max_attempts: int = env("SHIPSTATION_MAX_ATTEMPTS", default=5)
    products_overlap_seconds: float = env(
        "SHIPPING_PRODUCTS_OVERLAP_SECONDS", default=300.0,
        help="incremental product syncs re-read this much before the last successful sync",
    )
    sync_log_retention_days: float = env(
        "SHIPPING_SYNC_LOG_RETENTION_DAYS", default=30.0, help="PruneSyncLogs default"
    )

    def use_sandbox(self) -> bool:
        if self.data_source == "auto":
            return self.api_key is None
        return self.data_source == "sandbox"
