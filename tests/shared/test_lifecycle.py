"""A service's start and stop: what a failed start opened is closed again, a stop takes a
bounded time whatever its tasks do, a second signal ends it, and nothing prints a secret."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from syncsuite.sync.v1 import sync_pb2, sync_pb2_grpc

from services.launch import child_stop_timeout
from shared.backends import Backends
from shared.config import ConfigError
from shared.migrations import MigrationError, migration_lock_key
from shared.processes import wait_for_health
from shared.scratch import scratch_database
from shared.server import (
    Runtime,
    ServiceDefinition,
    longest_stop,
    running_service,
    start_service,
)
from tests.conftest import ADMIN_TOKEN, DATA_KEY, JWT_SECRET
from tests.shared import no_connections, probe_service
from tests.waiting import wait_for

ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


async def _nothing_to_set_up(runtime: Runtime) -> None:
    pass


async def test_a_start_that_fails_after_the_pool_opened_closes_the_pool(
    service_env: dict[str, str], database_url: str,
) -> None:
    # a URL whose scheme the settings accept but whose database is not a number: the Redis
    # client refuses it once the pool is open and migrated
    bad_database = "redis://127.0.0.1:6379/0?db=not-a-number"
    definition = ServiceDefinition(name="bad_redis", default_port=0, setup=_nothing_to_set_up)
    with pytest.raises(ConfigError, match="REDIS_URL is invalid: Invalid value for 'db'"):
        await start_service(definition, {**service_env, "REDIS_URL": bad_database}, port=0)
    await wait_for(lambda: no_connections(database_url, definition.name), timeout=5,
                   what="the failed start's connections closed")


async def test_a_replica_waiting_longer_than_its_migration_lock_timeout_does_not_start(
    service_env: dict[str, str], database_url: str,
) -> None:
    definition = ServiceDefinition(name="lock_held", default_port=0, setup=_nothing_to_set_up)
    migrating_replica = await asyncpg.connect(database_url, timeout=10)
    try:
        await migrating_replica.execute("SELECT pg_advisory_lock($1)",
                                        migration_lock_key(definition.name))
        env = {**service_env, "SYNCSUITE_MIGRATION_LOCK_TIMEOUT": "1"}
        with pytest.raises(MigrationError, match="another replica has been migrating"):
            await asyncio.wait_for(start_service(definition, env, port=0), 30)
    finally:
        await migrating_replica.close()
    await wait_for(lambda: no_connections(database_url, definition.name), timeout=5,
                   what="the failed start's connections closed")


async def test_a_default_metrics_port_past_the_last_port_is_a_configuration_error(
    service_env: dict[str, str], database_url: str,
) -> None:
    env = {key: value for key, value in service_env.items() if key != "SYNCSUITE_METRICS_PORT"}
    definition = ServiceDefinition(name="high_port", default_port=0, setup=_nothing_to_set_up)
    with pytest.raises(ConfigError, match="SYNCSUITE_METRICS_PORT is unset"):
        await start_service(definition, {**env, "SYNCSUITE_GRPC_PORT": "65000"})
    await wait_for(lambda: no_connections(database_url, definition.name), timeout=5,
                   what="the failed start's connections closed")


async def test_a_running_service_prints_no_secret(service_env: dict[str, str]) -> None:
    async with running_service(probe_service.SERVICE, service_env) as service:
        printed = repr(service)
    assert "environ" not in printed
    for secret in (ADMIN_TOKEN, JWT_SECRET, DATA_KEY):
        assert secret not in printed


async def test_stop_ends_in_time_while_a_task_holds_a_connection_through_its_cancellation(
    service_env: dict[str, str], database_url: str,
) -> None:
    holding = asyncio.Event()
    workers: list[asyncio.Task[Any]] = []

    async def hold_a_connection(runtime: Runtime) -> None:
        async with runtime.db.acquire():
            holding.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await asyncio.sleep(3600)  # a clean-up that never ends (a stuck driver, a lost
                raise                      # wake-up): the pool waits for this connection

    async def setup(runtime: Runtime) -> None:
        workers.append(runtime.tasks.spawn(hold_a_connection(runtime), name="holder"))

    definition = ServiceDefinition(name="held_connection", default_port=0, setup=setup)
    service = await start_service(definition, {**service_env, "SYNCSUITE_METRICS_PORT": "-1"},
                                  port=0)
    try:
        await asyncio.wait_for(holding.wait(), 10)
        started = time.monotonic()
        await asyncio.wait_for(service.stop(grace=1.0), longest_stop(1.0) + 10)
        assert time.monotonic() - started < longest_stop(1.0) + 1.0
        # the held connection was terminated, not left to the task
        await wait_for(lambda: no_connections(database_url, definition.name), timeout=10,
                       what="the service's connections closed")
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.wait(workers, timeout=10)


async def test_a_second_sigterm_while_stopping_ends_the_process_at_once(
    service_env: dict[str, str], backends: Backends, tmp_path: Path,
) -> None:
    # a database of its own: the forced exit leaves its job RUNNING (until its lock expires)
    async with scratch_database(backends.database_url) as database_url:
        await _stop_twice(
            {**service_env, "DATABASE_URL": database_url, "SYNCSUITE_SHUTDOWN_GRACE": "60"},
            tmp_path,
        )


async def _stop_twice(environment: dict[str, str], tmp_path: Path) -> None:
    """Runs the probe service, stops it with an RPC in flight, and again while it drains."""
    process, address = probe_service.start_process(environment, tmp_path)
    try:
        await asyncio.to_thread(wait_for_health, address, 30)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            # in flight for 30 s: the first SIGTERM's drain waits for it
            in_flight = asyncio.ensure_future(stub.Sync(
                sync_pb2.SyncRequest(scope="gated"), metadata=ADMIN, timeout=60))

            async def gated_job_running() -> bool:
                status = await stub.GetSyncStatus(
                    sync_pb2.GetSyncStatusRequest(scope="gated"), metadata=ADMIN, timeout=5)
                return bool(status.scopes[0].running.job_id)

            await wait_for(gated_job_running, timeout=10, what="the gated job running")
            process.signal(signal.SIGTERM)
            await wait_for(lambda: '"event": "stopping"' in process.log_tail(50), timeout=10,
                           what="the service stopping")
            process.signal(signal.SIGTERM)
            assert process.process is not None
            exit_code = await asyncio.to_thread(process.process.wait, 10)
            in_flight.cancel()
            await asyncio.gather(in_flight, return_exceptions=True)
        assert exit_code == 128 + signal.SIGTERM
        assert '"event": "stop_forced"' in process.log_tail(50)
    finally:
        process.kill()


def test_make_run_waits_for_a_stopping_service_longer_than_its_stop_may_take() -> None:
    assert child_stop_timeout({}) > longest_stop(10.0) + 1.0
    assert child_stop_timeout({"SYNCSUITE_SHUTDOWN_GRACE": "30"}) > longest_stop(30.0) + 1.0
    # a grace the services refuse: they never started, any timeout will do
    assert child_stop_timeout({"SYNCSUITE_SHUTDOWN_GRACE": "nan"}) > 0
