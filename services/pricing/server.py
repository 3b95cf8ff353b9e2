"""The pricing service: wiring (settings, StockX client, store, sync scopes, RPC handlers)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import structlog
from syncsuite.pricing.v1 import pricing_service_pb2, pricing_service_pb2_grpc

from services.pricing.service import PricingServicer
from services.pricing.settings import PricingSettings
from services.pricing.stockx import create_stockx_client
from services.pricing.store import PricingStore
from services.pricing.sync import PriceSync
from shared.config import load
from shared.server import Runtime, ServiceDefinition
from shared.sync import SyncJob, SyncScope

__all__ = ["SERVICE", "setup"]

log = structlog.get_logger("pricing")


async def setup(runtime: Runtime) -> None:
    settings = load(PricingSettings, runtime.environ)
    connection = settings.connection()
    client = create_stockx_client(connection, settings)
    runtime.on_stop(client.aclose)
    store = PricingStore(runtime.db)
    price_sync = PriceSync(store, client, settings)

    async def details() -> dict[str, str]:
        return {
            "data_source": connection.source,
            "regions": ",".join(settings.regions),
            "backlog": str(len(await store.backlog())),
            "max_products_per_run": str(settings.max_products_per_run),
        }

    async def retention(job: SyncJob) -> None:
        await price_sync.prune(job)

    runtime.sync.add(SyncScope(
        "prices", price_sync.run, details=details,
        description="StockX market data for portfolio, popular and recently viewed products",
    ), default=True)
    runtime.sync.add(SyncScope(
        "retention", retention, locks=("prices",),
        description="prune raw snapshots older than PRICING_RETENTION_DAYS",
    ))
    servicer = PricingServicer(
        store, settings, on_cache_event=partial(runtime.metrics.cache_hit, "pricing_latest"))
    runtime.add_servicer(
        pricing_service_pb2.DESCRIPTOR.services_by_name["PricingService"],
        pricing_service_pb2_grpc.add_PricingServiceServicer_to_server, servicer,
    )
    # migrations/0003: products' changes are notified on this channel when they commit
    runtime.invalidation_feed("pricing_data_changed", servicer.latest_cache)
    log.info("pricing_ready", data_source=connection.source, regions=settings.regions,
             rate_per_second=settings.rate_per_second)


SERVICE = ServiceDefinition(
    name="pricing",
    default_port=50052,
    setup=setup,
    migrations=Path(__file__).parent / "migrations",
)
