"""The timeentries service: wiring (settings, stores, Zoho client, workers, sync scopes)."""

from __future__ import annotations

from pathlib import Path

from syncsuite.timeentries.v1 import timeentries_service_pb2, timeentries_service_pb2_grpc

from services.timeentries.handlers import TimeEntriesServicer
from services.timeentries.hot_store import DATA_TOKEN_PREFIX, HotStore, email_of_data_token_key
from services.timeentries.model import Limits
from services.timeentries.outbox import Outbox
from services.timeentries.projects import Projects
from services.timeentries.settings import TimeEntriesSettings
from services.timeentries.store import EntryStore, ProjectStore
from services.timeentries.worker import SINK_NAMES, Workers, build_workers
from services.timeentries.zoho import ZohoClient
from shared.config import load
from shared.pipelined_redis import PipelinedRedis
from shared.redis_invalidation import RedisInvalidationFeed
from shared.server import Runtime, ServiceDefinition
from shared.sync import SyncJob, SyncScope

__all__ = ["SERVICE", "create_servicer", "feed_list_cache"]

SERVICE_DESCRIPTOR = timeentries_service_pb2.DESCRIPTOR.services_by_name["TimeEntriesService"]


def create_servicer(runtime: Runtime, settings: TimeEntriesSettings) -> TimeEntriesServicer:
    """The RPC handlers over the runtime's PostgreSQL and Redis, their Redis calls on a
    pipelined connection of their own (closed at stop)."""
    limits = Limits(max_past_days=settings.max_past_days,
                    max_description=settings.max_description)
    pipelined = PipelinedRedis(runtime.settings.redis_url.reveal())
    runtime.on_stop(pipelined.aclose)
    hot = HotStore(runtime.redis, settings.entry_ttl_days * 86400, limits.max_future_days,
                   pipelined)
    return TimeEntriesServicer(
        hot=hot, entries=EntryStore(runtime.db),
        projects=Projects(runtime.redis, ProjectStore(runtime.db), runtime.metrics),
        outbox=Outbox(runtime.redis, SINK_NAMES), limits=limits, metrics=runtime.metrics,
    )


def feed_list_cache(
    runtime: Runtime, servicer: TimeEntriesServicer, **options: float
) -> RedisInvalidationFeed:
    """Tells ``servicer``'s list cache of every change to a user's data token, from now until
    shutdown (so a held answer is served with no Redis call; see hot_store.py, "Data
    version")."""
    return runtime.redis_invalidation_feed(
        [DATA_TOKEN_PREFIX], email_of_data_token_key, servicer.list_cache, **options)


async def setup(runtime: Runtime) -> None:
    settings = load(TimeEntriesSettings, runtime.environ)
    zoho = ZohoClient.from_settings(settings)
    servicer = create_servicer(runtime, settings)
    projects, outbox = servicer.projects, servicer.outbox
    await outbox.ensure_groups()
    runtime.add_servicer(
        SERVICE_DESCRIPTOR, timeentries_service_pb2_grpc.add_TimeEntriesServiceServicer_to_server,
        servicer,
    )
    feed_list_cache(runtime, servicer)

    async def sync_projects(job: SyncJob) -> None:
        await projects.sync(job, zoho)

    async def retry_entries(job: SyncJob) -> None:
        """Every pending outbox message, now, whatever its backoff."""
        for worker in build_workers(runtime.redis, runtime.db, zoho, settings):
            async with job.operation(f"retry_{worker.sink.name}") as op:
                handled = await worker.reclaim(force=True, min_idle=0.5)
                while (batch := await runtime.redis.xreadgroup(
                        worker.sink.name, worker.consumer, {"timeentries:outbox": ">"},
                        count=worker.sink.batch_size)):
                    handled += sum([await worker.process(messages) for _, messages in batch])
                op.records = op.counts.seen = handled
                op.counts.updated = worker.delivered
                remaining = next(b for b in await outbox.backlog() if b.target == worker.sink.name)
                op.counts.failed = remaining.pending
                op.details = {"pending_after": str(remaining.pending),
                              "dead_letters": str(remaining.failed)}

    runtime.sync.add(SyncScope(
        "projects", sync_projects, "projects, user access and users from Zoho"), default=True)
    runtime.sync.add(SyncScope(
        "entries", retry_entries, "retry every entry still pending for PostgreSQL or Zoho"))

    workers = (Workers.start(build_workers(runtime.redis, runtime.db, zoho, settings))
               if settings.in_process_workers else None)

    async def stop() -> None:
        if workers is not None:
            await workers.stop()
        await zoho.aclose()

    runtime.on_stop(stop)
    if settings.initial_sync and await projects.store.is_empty():
        await runtime.sync.start("projects", reason="initial load: no projects yet")


SERVICE = ServiceDefinition(
    name="timeentries",
    default_port=50054,
    setup=setup,
    migrations=Path(__file__).parent / "migrations",
)
