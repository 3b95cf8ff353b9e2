"""Shipping: a full ShipStation sync of one store (10,000 products, 20,000 stock rows) against
the sandbox with a short rate limit, compared with the least time and the fewest requests that
limit and the paging allow; database round trips per page; ListInventory of one sku across 50
warehouses at 8 callers, against Ping on the same server.

The sandbox limit (v1: 10 requests per 5 s window; v2: 5 per second, burst 5) keeps the run
short; the physical minimum is computed from it: v1 needs ceil(N1 / 10) windows, so its last
request cannot start before (ceil(N1 / 10) - 1) × 5 s; v2 cannot send N2 requests before
(N2 - 5) / 5 s. The sync cannot finish sooner than the larger of the two.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import grpc
from syncsuite.shipping.v1 import shipping_service_pb2 as pb
from syncsuite.shipping.v1 import shipping_service_pb2_grpc
from syncsuite.sync.v1 import sync_pb2, sync_pb2_grpc

from bench.harness import (
    Call,
    Options,
    Report,
    admin_metadata,
    as_process,
    at_most,
    bench_backends,
)
from services.shipping.sandbox import AccountSpec, SandboxConfig, ShipStationSandbox
from services.shipping.sandbox import credentials_of as sandbox_credentials
from shared.sandbox import SandboxServer

V1_LIMIT, V1_WINDOW = 10, 5.0
V2_PER_SECOND, V2_BURST = 5.0, 5.0
PRODUCTS, STOCK_ROWS = 10_000, 20_000
V1_PAGE, V2_PAGE = 500, 500


def physical_minimum(v1_requests: int, v2_requests: int) -> float:
    v1 = (math.ceil(v1_requests / V1_LIMIT) - 1) * V1_WINDOW
    v2 = max(0.0, (v2_requests - V2_BURST) / V2_PER_SECOND)
    return max(v1, v2)


def list_inventory(channel: grpc.aio.Channel, *, integration_id: str, sku: str) -> Call:
    stub = shipping_service_pb2_grpc.ShippingServiceStub(channel)
    request = pb.ListInventoryRequest(integration_id=integration_id, sku=sku)
    return lambda: stub.ListInventory(request, timeout=10)


async def _add(channel: grpc.aio.Channel, env: dict[str, str], number: int) -> str:
    key, secret, v2 = sandbox_credentials(number)
    reply = await shipping_service_pb2_grpc.ShippingServiceStub(channel).UpsertIntegration(
        pb.UpsertIntegrationRequest(name=f"bench-{number}", api_key=key, api_secret=secret,
                                    v2_api_key=v2), metadata=admin_metadata(env), timeout=10)
    return str(reply.integration.integration_id)


async def _sync(channel: grpc.aio.Channel, env: dict[str, str]) -> tuple[Any, float]:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    started = time.perf_counter()
    reply = await stub.Sync(sync_pb2.SyncRequest(scope="all", full=True, reason="bench"),
                            metadata=admin_metadata(env), timeout=600)
    return reply.report, time.perf_counter() - started


async def run(report: Report, options: Options) -> None:
    config = SandboxConfig(
        accounts=(
            AccountSpec(1, products=PRODUCTS, warehouses=10, locations_per_warehouse=2,
                        stock_rows_per_product=STOCK_ROWS // PRODUCTS),
            AccountSpec(2, products=200, warehouses=50, locations_per_warehouse=1,
                        stock_rows_per_product=50),
        ),
        v1_limit=V1_LIMIT, v1_window=V1_WINDOW, v2_rate_per_minute=V2_PER_SECOND * 60,
        v2_burst=V2_BURST,
    )
    sandbox = ShipStationSandbox(config)
    sandbox.account(1)  # generate the data before the clock starts
    sandbox.account(2)
    with SandboxServer(sandbox) as server:
        async with bench_backends() as base_env:
            env = {
                **base_env, "SHIPSTATION_DATA_SOURCE": "sandbox",
                "SHIPSTATION_SANDBOX_URL": server.url,
                "SHIPSTATION_V1_RATE_LIMIT": str(V1_LIMIT),
                "SHIPSTATION_V1_RATE_WINDOW": str(V1_WINDOW),
                "SHIPSTATION_V1_RATE_MARGIN": "0.25",
                # a hair under the sandbox's rate: loopback jitter must not cost a 429
                "SHIPSTATION_V2_RATE_PER_MINUTE": str(V2_PER_SECOND * 60 * 0.98),
                "SHIPSTATION_V2_BURST": str(V2_BURST),
                "SHIPSTATION_PAGE_SIZE": str(V1_PAGE),
                "SHIPSTATION_V2_PAGE_SIZE": str(V2_PAGE),
            }
            with as_process("services.shipping", env) as address:
                async with grpc.aio.insecure_channel(address) as channel:
                    await _full_sync(report, channel, env, sandbox)
                    await _inventory_queries(report, options, address, channel, env)


async def _full_sync(
    report: Report, channel: grpc.aio.Channel, env: dict[str, str], sandbox: ShipStationSandbox
) -> None:
    await _add(channel, env, 1)
    sync_report, elapsed = await _sync(channel, env)
    if sync_report.status != sync_pb2.SYNC_STATUS_COMPLETED:
        raise RuntimeError(f"sync did not complete: {sync_report.error}")
    ops = {op.name.split("/", 1)[1]: op for op in sync_report.operations}
    v1_requests = sum(int(ops[n].details["requests"]) for n in ("warehouses", "products"))
    v2_requests = sum(int(ops[n].details["requests"])
                      for n in ("inventory_warehouses", "inventory_locations", "inventory"))
    v1_fewest = 1 + math.ceil(PRODUCTS / V1_PAGE)
    v2_fewest = 2 + math.ceil(STOCK_ROWS / V2_PAGE)
    minimum = physical_minimum(v1_fewest, v2_fewest)
    report.add("full sync requests", v1_requests + v2_requests, "requests",
               target=at_most(v1_fewest + v2_fewest, "requests"),
               notes=f"v1 {v1_requests} (fewest {v1_fewest}), v2 {v2_requests} "
                     f"(fewest {v2_fewest}); sandbox 429s: "
                     f"{sandbox.v1_limit.rejected + sandbox.v2_limit.rejected}")
    report.add("full sync time vs rate-limit minimum", elapsed / minimum, "×",
               target=at_most(1.15, "×"),
               notes=f"{elapsed:.2f} s for {ops['products'].records} products and "
                     f"{ops['inventory'].records} stock rows; minimum {minimum:.2f} s "
                     f"(v1 {V1_LIMIT}/{V1_WINDOW:g} s, v2 {V2_PER_SECOND:g}/s burst "
                     f"{V2_BURST:g})")
    pages = sum(int(op.details["pages"]) for op in sync_report.operations)
    trips = sum(int(op.details["db_round_trips"]) for op in sync_report.operations)
    records = sum(op.records for op in sync_report.operations)
    report.add("full sync DB round trips per page", trips / pages, "trips/page",
               target=at_most(2, "trips/page"),
               notes=f"{trips} round trips for {pages} pages and {records} records "
                     f"({records / trips:.0f} records per round trip): one upsert per page, "
                     "one 'gone upstream' statement per operation")


async def _inventory_queries(
    report: Report, options: Options, address: str, channel: grpc.aio.Channel,
    env: dict[str, str],
) -> None:
    stub = shipping_service_pb2_grpc.ShippingServiceStub(channel)
    integrations = await stub.ListIntegrations(pb.ListIntegrationsRequest(),
                                               metadata=admin_metadata(env), timeout=10)
    for integration in integrations.integrations:
        await stub.DeactivateIntegration(pb.DeactivateIntegrationRequest(
            integration_id=integration.integration_id), metadata=admin_metadata(env), timeout=10)
    integration_id = await _add(channel, env, 2)
    sync_report, _ = await _sync(channel, env)
    if sync_report.status != sync_pb2.SYNC_STATUS_COMPLETED:
        raise RuntimeError(f"sync did not complete: {sync_report.error}")
    products = await stub.ListProducts(pb.ListProductsRequest(
        integration_id=integration_id, page_size=1), timeout=10)
    sku = products.products[0].sku
    levels = await stub.ListInventory(pb.ListInventoryRequest(
        integration_id=integration_id, sku=sku), timeout=10)
    warehouses = {level.warehouse_id for level in levels.levels}
    # alternating slices (Ping, candidate, Ping, ...): load changing during the run falls on both
    comparison = await options.compare(
        address, functools.partial(list_inventory, integration_id=integration_id, sku=sku))
    report.add_stats("Ping ×8", comparison.baseline)
    report.add_stats("ListInventory one sku ×8", comparison.candidate, p99=at_most(5, "ms"),
                     notes=f"{len(levels.levels)} levels in {len(warehouses)} warehouses; "
                           "answered from memory, kept serialized (invalidated by NOTIFY)")
    report.add_comparison("ListInventory one sku ×8", comparison)
