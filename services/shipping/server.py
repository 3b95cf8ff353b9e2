"""The shipping service: wiring (settings, store, ShipStation clients, sync scopes, RPCs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from pathlib import Path

import httpx
import structlog
from syncsuite.shipping.v1 import shipping_service_pb2, shipping_service_pb2_grpc

from services.shipping.handlers import ShippingServicer
from services.shipping.settings import ShippingSettings
from services.shipping.shipstation import Credentials, Limits, ShipStationClient
from services.shipping.store import IntegrationRow, ShippingStore
from services.shipping.sync import SCOPES, ClientFactory, ShippingSync
from shared.config import ConfigError, load
from shared.sealing import Sealer, SealingError
from shared.server import Runtime, ServiceDefinition
from shared.sync import SyncJob, SyncScope
from shared.timestamps import utcnow

log = structlog.get_logger("shipping")

__all__ = ["SERVICE", "build_service", "make_client_factory"]

MIGRATIONS = Path(__file__).parent / "migrations"
# Scopes sharing a table never run at once; `all` takes every lock.
LOCKS = {"all": ("warehouses", "products", "inventory"), "warehouses": ("warehouses",),
         "products": ("products",), "inventory": ("inventory",)}


def make_client_factory(
    settings: ShippingSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ClientFactory:
    """Clients for the sandbox or the real API (per settings); tests pass a transport/clock."""
    sandbox = settings.use_sandbox()
    v1_url = settings.sandbox_url if sandbox else settings.v1_url
    v2_url = settings.sandbox_url if sandbox else settings.v2_url
    limits = Limits(
        v1_limit=settings.v1_rate_limit, v1_window=settings.v1_rate_window,
        v1_margin=settings.v1_rate_margin, v2_per_minute=settings.v2_rate_per_minute,
        v2_burst=settings.v2_burst, page_size=settings.page_size,
        v2_page_size=settings.v2_page_size, timeout=settings.timeout_seconds,
        max_attempts=settings.max_attempts,
    )

    def create(integration: IntegrationRow) -> ShipStationClient:
        credentials = Credentials(integration.api_key, integration.api_secret,
                                  integration.v2_api_key)
        return ShipStationClient.create(credentials, v1_url=v1_url, v2_url=v2_url,
                                        limits=limits, transport=transport, clock=clock,
                                        sleep=sleep)

    return create


def credentials_sealer(runtime: Runtime) -> Sealer:
    """What seals the stored ShipStation credentials: the service does not start without it."""
    key = runtime.settings.data_key
    if key is None:
        raise ConfigError("SYNCSUITE_DATA_KEY is not set: shipping stores ShipStation"
                          " credentials only sealed (give the base64 of 32 random bytes,"
                          " e.g. openssl rand -base64 32)")
    try:
        return Sealer.from_setting(key.reveal())
    except SealingError as error:
        raise ConfigError(str(error)) from None


def build_service(
    client_factory: Callable[[ShippingSettings], ClientFactory] | None = None,
) -> ServiceDefinition:
    """The service; ``client_factory`` (tests, benchmarks) replaces how clients are made."""

    async def setup(runtime: Runtime) -> None:
        settings = load(ShippingSettings, runtime.environ)
        store = ShippingStore(runtime.db, credentials_sealer(runtime))
        sealed = await store.seal_stored_credentials()
        if sealed:
            log.info("stored_credentials_sealed", integrations=sealed)
        factory = (client_factory or make_client_factory)(settings)
        sync = ShippingSync(
            store, factory, products_overlap=timedelta(seconds=settings.products_overlap_seconds)
        )
        runtime.on_stop(sync.close)
        if settings.api_key and settings.api_secret and settings.v2_api_key:
            await store.upsert_integration("default", 0, settings.api_key.reveal(),
                                           settings.api_secret.reveal(),
                                           settings.v2_api_key.reveal())
        source = "sandbox" if settings.use_sandbox() else "real"

        async def details() -> dict[str, str]:
            active = await store.count_active_integrations()
            return {"data_source": source, "active_integrations": str(active)}

        for name in SCOPES:
            runtime.sync.add(
                SyncScope(name, sync.handler(name), description=f"ShipStation {name}",
                          locks=LOCKS[name], details=details),
                default=name == "all",
            )
        retention = timedelta(days=settings.sync_log_retention_days)

        async def prune_logs(job: SyncJob) -> None:
            async with job.operation("prune sync_logs") as op:
                cutoff = utcnow() - retention
                op.details["cutoff"] = cutoff.isoformat()
                if job.dry_run:
                    op.details["dry_run"] = "nothing deleted"
                    return
                op.records = op.counts.deleted = await store.prune_sync_logs(cutoff)

        runtime.sync.add(SyncScope(
            "prune-logs", prune_logs, description="sync_logs older than the retention"))
        servicer = ShippingServicer(
            store, retention=retention,
            on_cache_event=partial(runtime.metrics.cache_hit, "shipping_inventory"))
        runtime.add_servicer(
            shipping_service_pb2.DESCRIPTOR.services_by_name["ShippingService"],
            shipping_service_pb2_grpc.add_ShippingServiceServicer_to_server, servicer,
        )
        # migrations/0003: inventory changes are notified on this channel when they commit
        runtime.invalidation_feed("shipping_inventory_changed", servicer.inventory_cache)

    return ServiceDefinition(name="shipping", default_port=50053, setup=setup,
                             migrations=MIGRATIONS)


SERVICE = build_service()
