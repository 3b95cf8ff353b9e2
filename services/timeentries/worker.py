"""The outbox workers (one per sink), inside the service or as their own process.

``python -m services.timeentries.worker`` runs them alone (set
``TIMEENTRIES_INPROCESS_WORKERS=false`` on the service then); SIGTERM stops them between
batches, and a worker killed mid-batch loses nothing: its pending messages are claimed again.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis
import structlog

from services.timeentries.hot_store import HotStore
from services.timeentries.model import Limits
from services.timeentries.outbox import Outbox, SinkWorker
from services.timeentries.settings import TimeEntriesSettings
from services.timeentries.sinks import PostgresSink, ZohoSink
from services.timeentries.store import EntryStore
from services.timeentries.zoho import ZohoClient
from shared.config import ConfigError, load
from shared.db import create_pool
from shared.logging import configure_logging
from shared.migrations import apply_migrations, discover
from shared.server import run_event_loop
from shared.settings import RuntimeSettings

__all__ = ["SINK_NAMES", "Workers", "build_workers", "main"]

log = structlog.get_logger("worker")
SINK_NAMES = ("postgres", "zoho")
SERVICE = "timeentries"


def build_workers(
    redis: aioredis.Redis, pool: asyncpg.Pool, zoho: ZohoClient, settings: TimeEntriesSettings
) -> list[SinkWorker]:
    hot = HotStore(redis, settings.entry_ttl_days * 86400, Limits().max_future_days)
    outbox = Outbox(redis, SINK_NAMES)
    sinks = [
        PostgresSink(EntryStore(pool), hot, settings.batch_size),
        ZohoSink(redis, zoho, settings.zoho_batch_size, settings.zoho_concurrency,
                 lock_seconds=4 * settings.zoho_timeout + 5),
    ]
    return [
        SinkWorker(redis, hot, outbox, sink, reclaim_idle=settings.reclaim_idle_seconds,
                   retry_max=settings.retry_max_seconds)
        for sink in sinks
    ]


@dataclass
class Workers:
    """Running sink workers; :meth:`stop` cancels them (a batch in flight stays pending)."""

    workers: list[SinkWorker]
    tasks: list[asyncio.Task[None]]

    @classmethod
    def start(cls, workers: list[SinkWorker]) -> Workers:
        tasks = [asyncio.create_task(w.run(), name=f"sink-{w.sink.name}") for w in workers]
        return cls(workers, tasks)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _connect(url: str) -> asyncpg.Pool:
    while True:
        try:
            return await create_pool(url, SERVICE, max_size=4)
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            log.warning("database_not_ready", error=type(error).__name__)
            await asyncio.sleep(1.0)


async def run(environ: Mapping[str, str]) -> None:
    runtime_settings = load(RuntimeSettings, environ)
    settings = load(TimeEntriesSettings, environ)
    pool = await _connect(runtime_settings.database_url.reveal())
    async with pool.acquire() as connection:
        migrations = discover(SERVICE, Path(__file__).parent / "migrations")
        await apply_migrations(
            connection, SERVICE, migrations,
            lock_timeout=runtime_settings.migration_lock_timeout_seconds,
            statement_timeout=runtime_settings.migration_timeout_seconds,
        )
    redis = aioredis.Redis.from_url(runtime_settings.redis_url.reveal(), decode_responses=True,
                                    socket_connect_timeout=2, socket_timeout=5)
    zoho = ZohoClient.from_settings(settings)
    workers = build_workers(redis, pool, zoho, settings)
    await workers[0].outbox.ensure_groups()
    running = Workers.start(workers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("workers_running", sinks=list(SINK_NAMES))
    try:
        await stop.wait()
    finally:
        await running.stop()
        await zoho.aclose()
        await redis.aclose()
        await pool.close()
        log.info("workers_stopped")


def main() -> None:
    import os

    configure_logging(os.environ.get("SYNCSUITE_LOG_LEVEL", "info"),
                      os.environ.get("SYNCSUITE_LOG_FORMAT", "auto"), service="timeentries-worker")
    try:
        run_event_loop(run(os.environ))
    except ConfigError as error:
        print(f"timeentries worker: configuration error: {error}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
