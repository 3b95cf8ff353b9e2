"""One way to start a service.

A service declares a :class:`ServiceDefinition` (name, default port, migrations folder and an
async ``setup`` that registers its servicers and sync scopes on the :class:`Runtime`).
:func:`start_service` builds everything in order — settings, database pool and migrations,
Redis, the grpc.aio server with health, reflection, diagnostics, SyncService and the
interceptor — and returns a :class:`RunningService`; :func:`main` runs one until SIGTERM/SIGINT
and drains it gracefully. Tests use :func:`running_service` on port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import grpc
import redis.asyncio as aioredis
import structlog
import uvloop
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from syncsuite.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc
from syncsuite.sync.v1 import sync_pb2, sync_pb2_grpc

from shared.auth import Authenticator, current_principal
from shared.config import ConfigError, load
from shared.db import create_pool
from shared.interceptor import ServerInterceptor, access_map
from shared.invalidation import InvalidationFeed
from shared.logging import configure_logging
from shared.metrics import Metrics
from shared.migrations import apply_migrations, discover
from shared.readcache import VersionedReadCache
from shared.redis_invalidation import RedisInvalidationFeed
from shared.settings import RuntimeSettings
from shared.sync import SyncJobStore, SyncRegistry, SyncServicer
from shared.tasks import BackgroundTasks

__all__ = [
    "RunningService",
    "Runtime",
    "ServiceDefinition",
    "main",
    "run_event_loop",
    "running_service",
    "start_service",
]

log = structlog.get_logger("server")

T = TypeVar("T")
SYNC_MIGRATIONS = Path(__file__).parent / "sync" / "migrations"
HEALTH_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    default_port: int
    setup: Callable[[Runtime], Awaitable[None]]
    migrations: Path | None = None


@dataclass
class Runtime:
    """Everything a service's domain code is handed: created once, closed once."""

    service: str
    settings: RuntimeSettings
    environ: Mapping[str, str]
    db: asyncpg.Pool
    redis: aioredis.Redis
    metrics: Metrics
    sync: SyncRegistry
    health: health.aio.HealthServicer
    server: grpc.aio.Server
    tasks: BackgroundTasks = field(default_factory=BackgroundTasks)
    feeds: list[InvalidationFeed] = field(default_factory=list)
    _access: dict[str, int] = field(default_factory=dict)
    _service_names: list[str] = field(default_factory=list)
    _stop_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def add_servicer(
        self, descriptor: ServiceDescriptor, add: Callable[[Any, grpc.aio.Server], None],
        servicer: Any,
    ) -> None:
        """Registers a servicer; its access rules come from the proto options."""
        add(servicer, self.server)
        self._access.update(access_map([descriptor]))
        self._service_names.append(descriptor.full_name)

    def invalidation_feed(
        self, channel: str, *caches: VersionedReadCache[Any, Any]
    ) -> InvalidationFeed:
        """Keeps ``caches`` told of the changes notified on ``channel`` (see
        :mod:`shared.invalidation`), from now until shutdown."""
        feed = InvalidationFeed(self.settings.database_url.reveal(), channel, caches)
        self.tasks.spawn(feed.run(), name=f"invalidation-feed-{channel}")
        self.sync.after_each_job(feed.caught_up)  # Sync's caller then reads its own writes here
        self.feeds.append(feed)
        return feed

    def redis_invalidation_feed(
        self, prefixes: Sequence[str], tag_of_key: Callable[[str], str | None],
        *caches: VersionedReadCache[Any, Any], **options: float,
    ) -> RedisInvalidationFeed:
        """Keeps ``caches`` told of changes to Redis keys under ``prefixes`` (see
        :mod:`shared.redis_invalidation`), from now until shutdown."""
        feed = RedisInvalidationFeed(self.settings.redis_url.reveal(), prefixes, tag_of_key,
                                     caches, **options)
        self.tasks.spawn(feed.run(), name=f"invalidation-feed-{feed.name}")
        return feed

    def on_stop(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Runs at shutdown, after in-flight RPCs drained, in reverse order of registration."""
        self._stop_hooks.append(hook)


class _Diagnostics(diagnostics_pb2_grpc.DiagnosticsServiceServicer):
    def __init__(self, service: str) -> None:
        self._service = service

    async def Ping(self, request: diagnostics_pb2.PingRequest, context: Any) -> Any:
        seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
        return diagnostics_pb2.PingResponse(
            payload=request.payload, service=self._service,
            server_time=Timestamp(seconds=seconds, nanos=nanos),
        )

    async def WhoAmI(self, request: diagnostics_pb2.WhoAmIRequest, context: Any) -> Any:
        principal = current_principal.get()
        return diagnostics_pb2.WhoAmIResponse(email=principal.email, subject=principal.subject)


@dataclass
class RunningService:
    runtime: Runtime
    port: int
    metrics_port: int | None
    grace: float

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        runtime = self.runtime
        log.info("stopping", service=runtime.service)
        await runtime.health.enter_graceful_shutdown()
        await runtime.server.stop(self.grace if grace is None else grace)
        for hook in reversed(runtime._stop_hooks):
            try:
                await hook()
            except Exception as error:
                log.error("stop_hook_failed", error=str(error))
        await runtime.sync.shutdown()
        await runtime.tasks.stop()
        await runtime.redis.aclose()
        await runtime.db.close()
        runtime.metrics.stop()
        log.info("stopped", service=runtime.service)


async def _connect_database(url: str, schema: str, size: int, wait: float) -> asyncpg.Pool:
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            return await create_pool(url, schema, max_size=size)
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            if asyncio.get_running_loop().time() > deadline:
                raise ConfigError(f"PostgreSQL is not reachable ({type(error).__name__})") from None
            log.warning("database_not_ready", error=type(error).__name__)
            await asyncio.sleep(1.0)


async def start_service(
    definition: ServiceDefinition,
    environ: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    database_wait_seconds: float = 30.0,
) -> RunningService:
    environ = dict(os.environ if environ is None else environ)
    settings = load(RuntimeSettings, environ)
    metrics = Metrics(definition.name)
    pool = await _connect_database(
        settings.database_url.reveal(), definition.name, settings.db_pool_size,
        database_wait_seconds,
    )
    try:
        migrations = discover("sync", SYNC_MIGRATIONS)
        if definition.migrations is not None:
            migrations += discover(definition.name, definition.migrations)
        async with pool.acquire() as connection:
            await apply_migrations(connection, definition.name, migrations)
    except BaseException:
        await pool.close()
        raise
    redis = aioredis.Redis.from_url(
        settings.redis_url.reveal(), decode_responses=True, socket_connect_timeout=2,
        socket_timeout=5, health_check_interval=15,
    )
    access: dict[str, int] = {}
    interceptor = ServerInterceptor(
        Authenticator(settings.admin_token, settings.jwt_secret, settings.jwt_audience),
        access, metrics, quiet_methods=frozenset({f"/{HEALTH_NAME}/Check"}),
        public_services=frozenset({HEALTH_NAME, reflection.SERVICE_NAME}),
    )
    server = grpc.aio.server(
        interceptors=[interceptor],
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 << 20)],
    )
    health_servicer = health.aio.HealthServicer()
    store = SyncJobStore(pool, replica=f"{socket.gethostname()}:{os.getpid()}")
    runtime = Runtime(
        service=definition.name, settings=settings, environ=environ, db=pool, redis=redis,
        metrics=metrics, sync=SyncRegistry(definition.name, store, metrics),
        health=health_servicer, server=server, _access=access,
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    runtime.add_servicer(
        diagnostics_pb2.DESCRIPTOR.services_by_name["DiagnosticsService"],
        diagnostics_pb2_grpc.add_DiagnosticsServiceServicer_to_server,
        _Diagnostics(definition.name),
    )
    runtime.add_servicer(
        sync_pb2.DESCRIPTOR.services_by_name["SyncService"],
        sync_pb2_grpc.add_SyncServiceServicer_to_server, SyncServicer(runtime.sync),
    )
    service = RunningService(runtime, 0, None, settings.shutdown_grace_seconds)
    try:
        await _start_serving(definition, service, port)
    except BaseException:
        await service.stop(grace=0)  # close what was opened: pool, Redis, tasks, metrics
        raise
    return service


async def _start_serving(
    definition: ServiceDefinition, service: RunningService, port: int | None
) -> None:
    runtime, settings = service.runtime, service.runtime.settings
    await definition.setup(runtime)
    reflection.enable_server_reflection(
        [*runtime._service_names, HEALTH_NAME, reflection.SERVICE_NAME], runtime.server
    )
    chosen = port if port is not None else (
        settings.grpc_port if settings.grpc_port is not None else definition.default_port
    )
    service.port = runtime.server.add_insecure_port(f"{settings.host}:{chosen}")
    if service.port == 0:
        raise ConfigError(f"cannot bind {settings.host}:{chosen} for {definition.name}")
    await runtime.server.start()
    metrics_port = settings.metrics_port
    if metrics_port is None:
        metrics_port = service.port + 1000 if chosen else 0
    if metrics_port >= 0:
        service.metrics_port = runtime.metrics.serve(settings.host, metrics_port)
    # What startup built lives as long as the process: moved out of the collector's sight, a
    # full collection walks only what came after (26 ms pauses under load were the tail of
    # CreateTimeEntry's latency; 0.6 ms after). Frozen garbage is still freed by refcounting.
    gc.freeze()
    for name in ["", *runtime._service_names]:
        await runtime.health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", service=definition.name, address=f"{settings.host}:{service.port}",
             metrics_port=service.metrics_port)


@contextlib.asynccontextmanager
async def running_service(
    definition: ServiceDefinition, environ: Mapping[str, str], *, port: int = 0
) -> AsyncIterator[RunningService]:
    environ = {"SYNCSUITE_METRICS_PORT": "0", **environ}
    service = await start_service(definition, environ, port=port)
    try:
        yield service
    finally:
        await service.stop(grace=1.0)


async def _serve_until_signalled(definition: ServiceDefinition) -> None:
    service = await start_service(definition)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await service.stop()


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Runs ``main`` to completion on uvloop (libuv's event loop): on the services' hot paths
    (grpc.aio, asyncpg, redis) it gives ~7% more calls/s than asyncio's own loop, measured in
    ``make bench``. ``SYNCSUITE_EVENT_LOOP=asyncio`` runs asyncio's loop instead."""
    choice = os.environ.get("SYNCSUITE_EVENT_LOOP", "uvloop").strip().lower()
    if choice == "asyncio":
        return asyncio.run(main)
    if choice != "uvloop":
        raise ConfigError(f"SYNCSUITE_EVENT_LOOP must be uvloop or asyncio, not {choice!r}")
    return uvloop.run(main)


def main(definition: ServiceDefinition) -> None:
    """Entry point of ``python -m services.<name>``."""
    configure_logging(
        os.environ.get("SYNCSUITE_LOG_LEVEL", "info"),
        os.environ.get("SYNCSUITE_LOG_FORMAT", "auto"),
        service=definition.name,
    )
    try:
        run_event_loop(_serve_until_signalled(definition))
    except ConfigError as error:
        log.error("configuration_error", error=str(error))
        print(f"{definition.name}: configuration error: {error}", file=sys.stderr)
        sys.exit(2)
