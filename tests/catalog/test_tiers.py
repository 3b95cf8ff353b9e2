"""The three tiers under load and under faults: single flight, warm start from Redis, replicas
following a new snapshot, NetSuite down (PostgreSQL answers), Redis down (memory answers)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from structlog.testing import capture_logs
from syncsuite.catalog.v1 import catalog_service_pb2 as pb
from syncsuite.sync.v1 import sync_pb2

from services.catalog.records import CUSTOMERS
from services.catalog.sandbox import SandboxConfig
from services.catalog.server import REDIS_HEALTH
from services.catalog.snapshot import GENERATION_KEY, SnapshotStore
from shared.backends import EmbeddedRedis
from shared.sandbox import FaultPlan
from tests.catalog.conftest import ADMIN, Catalog, RunningSandbox, catalog_env, start_catalog
from tests.waiting import wait_for


async def test_200_concurrent_cold_searches_make_exactly_one_upstream_fetch(
    service_env: dict[str, str], sandbox: RunningSandbox, clean: None
) -> None:
    env = catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false")
    async with start_catalog(env) as catalog:
        replies = await asyncio.gather(*(catalog.search("a") for _ in range(200)))
        assert {reply.total_size for reply in replies} == {replies[0].total_size}
        assert replies[0].total_size > 0
        assert replies[0].provenance.source == pb.TIER_NETSUITE
    assert sandbox.fetches("customer") == 1


async def test_two_cold_replicas_share_one_fetch_through_the_redis_lease(
    service_env: dict[str, str], clean: None
) -> None:
    with RunningSandbox(SandboxConfig(customers=300, items=10, latency_ms=150)) as sandbox:
        env = catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false")
        async with start_catalog(env) as first, start_catalog(env) as second:
            replies = await asyncio.gather(*(
                replica.search("summit") for replica in (first, second) for _ in range(20)))
            assert len({reply.total_size for reply in replies}) == 1
            sources = {reply.provenance.source for reply in replies}
            assert sources <= {pb.TIER_NETSUITE, pb.TIER_REDIS}
        assert sandbox.fetches("customer") == 1


async def test_a_new_replica_starts_warm_from_redis_and_follows_new_snapshots(
    service_env: dict[str, str], sandbox: RunningSandbox, clean: None
) -> None:
    env = catalog_env(service_env, sandbox.url)
    async with start_catalog(env) as first:
        await first.sync("customers")
        fetches = sandbox.fetches("customer")
        async with start_catalog(env) as second:
            reply = await second.search("cust-0001")
            assert reply.provenance.source == pb.TIER_REDIS
            assert sandbox.fetches("customer") == fetches  # no upstream call
            before = await second.stub.GetCacheStatus(pb.GetCacheStatusRequest(), timeout=5)

            sandbox.mutate(entity="customers", share=0.0, add=1)  # customer 301 appears
            await first.sync("customers", full=True)

            async def second_sees_it() -> bool:
                reply = await second.stub.SearchCustomers(
                    pb.SearchCustomersRequest(query="CUST-000301"), timeout=5)
                return reply.total_size == 1

            await wait_for(second_sees_it, timeout=10, every=0.05)
            after = await second.stub.GetCacheStatus(pb.GetCacheStatusRequest(), timeout=5)
            assert after.entities[0].index_version > before.entities[0].index_version


async def test_netsuite_down_searches_answer_from_postgresql(
    service_env: dict[str, str], sandbox: RunningSandbox, clean: None
) -> None:
    env = catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false")
    async with start_catalog(env) as catalog:
        await catalog.sync("customers")
        cleared = await catalog.stub.ClearCache(pb.ClearCacheRequest(), metadata=ADMIN, timeout=5)
        assert cleared.deleted_keys > 0
    sandbox.faults.configure(FaultPlan(error_rate=1.0, error_status=503))
    async with start_catalog(env) as catalog:
        reply = await catalog.search("cust-0002")
        assert reply.total_size > 0
        assert reply.provenance.source == pb.TIER_POSTGRES
        assert reply.provenance.data_age.ToTimedelta().total_seconds() >= 0

        async def reported_down() -> bool:
            reply = await catalog.search("cust-0002")
            return reply.provenance.upstream_unavailable

        await wait_for(reported_down, timeout=10, every=0.05)  # the background revalidation failed
        status = await catalog.stub.GetCacheStatus(pb.GetCacheStatusRequest(), timeout=5)
        assert status.degraded and any("NetSuite" in p for p in status.problems)
        source = await catalog.stub.GetDataSourceStatus(pb.GetDataSourceStatusRequest(), timeout=5)
        assert source.active == pb.DATA_SOURCE_SANDBOX and not source.last_call_ok


async def test_netsuite_down_and_nothing_cached_is_unavailable(
    service_env: dict[str, str], sandbox: RunningSandbox, clean: None
) -> None:
    sandbox.faults.force("status", count=100, status=500)
    env = catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false")
    async with start_catalog(env) as catalog:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await catalog.search("acme")
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "NetSuite" in (raised.value.details() or "")


async def test_redis_down_search_still_answers_and_health_says_degraded(
    service_env: dict[str, str], sandbox: RunningSandbox, clean: None,
    private_redis: EmbeddedRedis,
) -> None:
    env = catalog_env(service_env, sandbox.url, REDIS_URL=private_redis.url,
                      CATALOG_PRELOAD="false")
    async with start_catalog(env) as catalog:
        await catalog.sync("customers")
        health = health_pb2_grpc.HealthStub(catalog.channel)

        async def redis_health() -> int:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=REDIS_HEALTH),
                                       timeout=5)
            return reply.status

        assert await redis_health() == health_pb2.HealthCheckResponse.SERVING
        private_redis.kill()

        async def degraded() -> bool:
            return await redis_health() == health_pb2.HealthCheckResponse.NOT_SERVING

        await wait_for(degraded, timeout=10, every=0.05)
        reply = await catalog.search("cust-0001")
        assert reply.total_size > 0
        overall = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert overall.status == health_pb2.HealthCheckResponse.SERVING
        status = await catalog.stub.GetCacheStatus(pb.GetCacheStatusRequest(), timeout=10)
        assert status.degraded and not status.redis_connected
        # a sync still lands in PostgreSQL and the index, without Redis
        report = await catalog.sync("customers", full=True)
        assert report.counts.unchanged == 300
        private_redis.start()

        async def recovered() -> bool:
            return await redis_health() == health_pb2.HealthCheckResponse.SERVING

        await wait_for(recovered, timeout=20, every=0.05)

        async def republished() -> bool:  # Redis came back empty: the newer index is written
            status = await catalog.stub.GetCacheStatus(pb.GetCacheStatusRequest(), timeout=5)
            return status.entities[0].cached and status.entities[0].count == 300

        await wait_for(republished, timeout=10, every=0.05)
        assert (await catalog.search("cust-0001")).total_size > 0


async def test_clear_cache_needs_the_admin_token_and_clears_every_replica(
    service_env: dict[str, str], sandbox: RunningSandbox, clean: None
) -> None:
    # with preload: an index preloaded from PostgreSQL revalidates from NetSuite in the
    # background, and such a fetch still running at the clear must not publish after it
    env = catalog_env(service_env, sandbox.url)
    async with start_catalog(env) as first, start_catalog(env) as second:
        await first.sync("customers")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await first.stub.ClearCache(pb.ClearCacheRequest(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await second.search("cust")
        await first.stub.ClearCache(pb.ClearCacheRequest(entity=pb.ENTITY_CUSTOMERS),
                                    metadata=ADMIN, timeout=5)

        async def dropped(replica: Catalog = second) -> bool:
            status = await replica.stub.GetCacheStatus(pb.GetCacheStatusRequest(), timeout=5)
            customers = status.entities[0]
            return not customers.cached and customers.index_count == 0

        await wait_for(dropped, timeout=10, every=0.05)


async def test_an_unreadable_snapshot_is_no_snapshot_and_the_next_sync_replaces_it(
    service_env: dict[str, str], sandbox: RunningSandbox, clean: None, redis_url: str
) -> None:
    env = catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false")
    async with start_catalog(env) as catalog:
        await catalog.sync("customers")
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.set(SnapshotStore.meta_key(CUSTOMERS), "not json")
    finally:
        await redis.aclose()
    async with start_catalog(env) as catalog:
        status = await catalog.stub.GetCacheStatus(pb.GetCacheStatusRequest(), timeout=5)
        assert not status.entities[0].cached and status.redis_connected
        reply = await catalog.search("cust-0001")
        assert reply.total_size > 0 and reply.provenance.source == pb.TIER_POSTGRES
        report = await catalog.sync("customers", full=True)
        assert report.status == sync_pb2.SYNC_STATUS_COMPLETED, report.error
        status = await catalog.stub.GetCacheStatus(pb.GetCacheStatusRequest(), timeout=5)
        assert status.entities[0].cached and status.entities[0].count == 300


async def test_following_redis_outlives_a_poll_that_fails(
    service_env: dict[str, str], sandbox: RunningSandbox, clean: None, redis_url: str
) -> None:
    """A value no poll can read (here the clear generation) fails those polls, not the loop:
    once it is gone, the replica follows a newer snapshot again."""
    env = catalog_env(service_env, sandbox.url, CATALOG_PRELOAD="false")
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with start_catalog(env) as first:
            await first.sync("customers")
            with capture_logs() as logs:
                await redis.set(GENERATION_KEY, "not a number")
                # a poll met it: logged by the loop (or by the task runner, had the loop died)
                failures = {"redis_poll_failed", "background_task_failed"}
                await wait_for(lambda: any(entry["event"] in failures for entry in logs),
                               timeout=10, every=0.05)
            await redis.delete(GENERATION_KEY)
            async with start_catalog(env) as second:  # another replica publishes newer data
                sandbox.mutate(entity="customers", share=0.0, add=1)  # customer 301
                await second.sync("customers", full=True)

            async def first_sees_it() -> bool:
                return (await first.search("CUST-000301")).total_size == 1

            await wait_for(first_sees_it, timeout=10, every=0.05)
    finally:
        await redis.aclose()
