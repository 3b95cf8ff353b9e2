"""The catalog service: wiring and the CatalogService handlers."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2
from syncsuite.catalog.v1 import catalog_service_pb2 as pb
from syncsuite.catalog.v1 import catalog_service_pb2_grpc

from services.catalog.answers import record_bytes
from services.catalog.kpis import KpiService
from services.catalog.netsuite import NetSuiteClient
from services.catalog.records import ENTITIES, EntitySpec, Record
from services.catalog.search import SearchIndex
from services.catalog.settings import CatalogSettings, Upstream, resolve_upstream
from services.catalog.snapshot import SnapshotStore
from services.catalog.store import CatalogStore, KpiRow
from services.catalog.sync import CatalogSync
from services.catalog.tiers import (
    FILTERS,
    REDIS_ERRORS,
    SOURCE_NETSUITE,
    SOURCE_POSTGRES,
    SOURCE_REDIS,
    EntityTiers,
    TierOptions,
)
from shared.config import load
from shared.errors import InvalidArgument, NotFound, Unavailable
from shared.paging import decode_page_token, encode_page_token
from shared.server import Runtime, ServiceDefinition
from shared.sync import SyncScope
from shared.timestamps import duration, timestamp

__all__ = ["REDIS_HEALTH", "SERVICE", "CatalogServicer", "CatalogState"]

log = structlog.get_logger("catalog")

REDIS_HEALTH = "catalog.redis"  # Health/Check service name: NOT_SERVING while Redis is down
MAX_QUERY = 100
MAX_PAGE = 200
DEFAULT_PAGE = 20
_TIERS = {SOURCE_REDIS: pb.TIER_REDIS, SOURCE_POSTGRES: pb.TIER_POSTGRES,
          SOURCE_NETSUITE: pb.TIER_NETSUITE}
_ENTITY_NAMES = {pb.ENTITY_CUSTOMERS: "customers", pb.ENTITY_ITEMS: "items"}
_CONTROL = re.compile(r"[\x00-\x1f]")
# ASCII digits only: str.isdigit() and \d also take "²" and "١٢", which int() refuses or reads
_NETSUITE_ID = re.compile(r"[0-9]{1,18}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _stamp(value: str) -> Timestamp | None:
    """A record's moment (ISO-8601, whole seconds) as a Timestamp."""
    return Timestamp(seconds=int(datetime.fromisoformat(value).timestamp())) if value else None


def customer_message(record: Record) -> pb.Customer:
    return pb.Customer(
        netsuite_id=str(record["netsuite_id"]), entity_id=record["entity_id"],
        company_name=record["company_name"], is_person=record["is_person"],
        first_name=record["first_name"], last_name=record["last_name"], email=record["email"],
        phone=record["phone"], subsidiary=record["subsidiary"], address=record["address"],
        city=record["city"], country=record["country"], industry=record["industry"],
        is_inactive=record["is_inactive"], create_time=_stamp(record["date_created"]),
        last_modified_time=_stamp(record["last_modified"]),
    )


def item_message(record: Record) -> pb.Item:
    return pb.Item(
        netsuite_id=str(record["netsuite_id"]), item_id=record["item_id"],
        display_name=record["display_name"], item_type=record["item_type"],
        base_price=record["base_price"] or "", is_inactive=record["is_inactive"],
        last_modified_time=_stamp(record["last_modified"]),
    )


@dataclass(frozen=True)
class _SearchKind:
    """What differs between SearchCustomers and SearchItems."""

    entity: str
    response: type[Message]
    filters: tuple[str, ...]
    encode: Callable[[Record], bytes]  # a record as the response's repeated field, serialized


_CUSTOMER_SEARCH = _SearchKind(
    "customers", pb.SearchCustomersResponse, FILTERS["customers"],
    partial(record_bytes, pb.SearchCustomersResponse, "customers", customer_message))
_ITEM_SEARCH = _SearchKind(
    "items", pb.SearchItemsResponse, FILTERS["items"],
    partial(record_bytes, pb.SearchItemsResponse, "items", item_message))
_NANOS = 1_000_000_000


def _fill_provenance(provenance: pb.Provenance, tiers: EntityTiers, index: SearchIndex) -> None:
    """Which tier the index came from, when its data was fetched and how old it is now (set in
    place: cheaper than building and copying the messages)."""
    provenance.SetInParent()
    provenance.source = _TIERS.get(index.source, pb.TIER_UNSPECIFIED)
    provenance.upstream_unavailable = tiers.upstream_down
    if index.fetched_at is not None:
        fetched_ns = (index.fetched_at - _EPOCH) // _MICROSECOND * 1000  # always aware
        provenance.fetch_time.seconds, provenance.fetch_time.nanos = divmod(fetched_ns, _NANOS)
        age = max(0, time.time_ns() - fetched_ns)
        provenance.data_age.seconds, provenance.data_age.nanos = divmod(age, _NANOS)


class CatalogState:
    """What the handlers and background loops share (created once in setup)."""

    def __init__(self, settings: CatalogSettings, upstream: Upstream, client: NetSuiteClient,
                 store: CatalogStore, snapshots: SnapshotStore, tiers: dict[str, EntityTiers],
                 kpis: KpiService) -> None:
        self.settings = settings
        self.upstream = upstream
        self.client = client
        self.store = store
        self.snapshots = snapshots
        self.tiers = tiers
        self.kpis = kpis
        self.redis_ok = True
        self.redis_error = ""
        self.generation: int | None = None


def _query(raw: str) -> str:
    query = raw.strip()
    if len(query) > MAX_QUERY:
        raise InvalidArgument("query", f"at most {MAX_QUERY} characters, got {len(query)}")
    if _CONTROL.search(query):
        raise InvalidArgument("query", "must not contain control characters")
    return query


def _filter(field: str, raw: str) -> str:
    value = raw.strip()
    if len(value) > MAX_QUERY:
        raise InvalidArgument(field, f"at most {MAX_QUERY} characters, got {len(value)}")
    return value


def _page_size(requested: int) -> int:
    if requested < 0 or requested > MAX_PAGE:
        raise InvalidArgument("page_size", f"must be between 0 and {MAX_PAGE}, got {requested}")
    return requested or DEFAULT_PAGE


def _search_key(query: str, filters: dict[str, str]) -> str:
    text = "\x1f".join([query.casefold(), *(f"{k}={v.casefold()}" for k, v in
                                            sorted(filters.items()))])
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def _offset(token: str, key: str) -> tuple[int, int | None]:
    """(offset, index version) from a page token of this search; (0, None) without one."""
    if not token:
        return 0, None
    position = decode_page_token(token, required=("o", "k"))
    offset, version = position["o"], position.get("v")
    # type() is int, not isinstance(): a bool is an int, and true would be offset 1
    if position["k"] != key or type(offset) is not int or offset < 0 or (
            version is not None and type(version) is not int):
        raise InvalidArgument("page_token", "belongs to another search")
    return offset, version


def _netsuite_id(raw: str) -> int:
    value = raw.strip()
    if not value:
        raise InvalidArgument("netsuite_id", "is required")
    if _NETSUITE_ID.fullmatch(value) is None:
        raise InvalidArgument("netsuite_id", f"must be a NetSuite internal id (up to 18 digits"
                                             f" 0-9), got {value[:20]!r}")
    return int(value)


class CatalogServicer(catalog_service_pb2_grpc.CatalogServiceServicer):
    def __init__(self, state: CatalogState) -> None:
        self._state = state
        self._kpis_built: tuple[KpiRow, pb.CustomerKpis] | None = None

    async def _answer(self, kind: _SearchKind, key: Hashable, request: Any) -> bytes:
        """The serialized response: a warm index answers a request it answered before from
        bytes it kept (validation included: the request is the same), then the provenance."""
        tiers = self._state.tiers[kind.entity]
        index = tiers.current()
        body = None if index is None else index.answers.get(key)
        if body is None:
            index, body = await self._search(kind, request)
            index.answers.put(key, body)
        response = kind.response()
        _fill_provenance(response.provenance, tiers, index)  # type: ignore[attr-defined]
        return body + response.SerializeToString()

    async def _search(self, kind: _SearchKind, request: Any) -> tuple[SearchIndex, bytes]:
        """Validates, searches, and serializes the page of records, the token and the total."""
        filters = {name: _filter(name, getattr(request, name)) for name in kind.filters}
        query = _query(request.query)
        if not query and not any(filters.values()):
            names = " or ".join(filters)
            raise InvalidArgument("query", f"is required unless {names} is set")
        size = _page_size(request.page_size)
        key = _search_key(query, filters)
        offset, version = _offset(request.page_token, key)
        index = await self._state.tiers[kind.entity].get_index()
        if version is not None and version != index.version:
            # the pages after it are of another data set: following them would skip or repeat
            raise InvalidArgument("page_token", "the data changed since this token was given"
                                                " (a sync ran): search again from the first page")
        result = index.search(query, filters)
        following = offset + size
        token = (encode_page_token({"o": following, "k": key, "v": index.version})
                 if following < result.total else "")
        records = b"".join([index.encoding(position, kind.encode)
                            for position in result.page(offset, size)])
        return index, records + kind.response(next_page_token=token,
                                              total_size=result.total).SerializeToString()

    async def SearchCustomers(self, request: pb.SearchCustomersRequest, context: Any
                              ) -> bytes:
        """A serialized pb.SearchCustomersResponse (see answers.py)."""
        return await self._answer(_CUSTOMER_SEARCH, (
            request.query, request.country, request.industry, request.page_size,
            request.page_token), request)

    async def SearchItems(self, request: pb.SearchItemsRequest, context: Any) -> bytes:
        """A serialized pb.SearchItemsResponse (see answers.py)."""
        return await self._answer(_ITEM_SEARCH, (
            request.query, request.item_type, request.page_size, request.page_token), request)

    async def _get(self, entity: str, raw_id: str) -> tuple[EntityTiers, SearchIndex, int]:
        netsuite_id = _netsuite_id(raw_id)
        tiers = self._state.tiers[entity]
        index = await tiers.get_index()
        found = index.get(netsuite_id)
        if found is None:
            raise NotFound(f"no {entity[:-1]} with netsuite_id {netsuite_id}")
        return tiers, index, found[0]

    async def GetCustomer(self, request: pb.GetCustomerRequest, context: Any
                          ) -> pb.GetCustomerResponse:
        tiers, index, position = await self._get("customers", request.netsuite_id)
        response = pb.GetCustomerResponse(customer=index.message(position, customer_message))
        _fill_provenance(response.provenance, tiers, index)
        return response

    async def GetItem(self, request: pb.GetItemRequest, context: Any) -> pb.GetItemResponse:
        tiers, index, position = await self._get("items", request.netsuite_id)
        response = pb.GetItemResponse(item=index.message(position, item_message))
        _fill_provenance(response.provenance, tiers, index)
        return response

    async def GetCacheStatus(self, request: pb.GetCacheStatusRequest, context: Any
                             ) -> pb.GetCacheStatusResponse:
        state = self._state
        response = pb.GetCacheStatusResponse(redis_connected=True)
        for name, entity in ((n, e) for e, n in _ENTITY_NAMES.items()):
            spec = ENTITIES[name]
            status = pb.EntityCacheStatus(entity=entity)
            try:
                meta = await state.snapshots.meta(spec)
                ttl = await state.snapshots.ttl(spec)
                if meta is not None:
                    status.cached = True
                    status.count, status.chunks, status.version = (meta.total, meta.chunks,
                                                                    meta.version)
                    status.fetch_time.CopyFrom(timestamp(meta.fetched_at))
                    if ttl is not None:
                        status.ttl.CopyFrom(duration(ttl))
            except REDIS_ERRORS as error:
                response.redis_connected = False
                problem = f"Redis unreachable ({type(error).__name__})"
                if problem not in response.problems:
                    response.problems.append(problem)
            index = state.tiers[name].index
            if index is not None:
                status.index_count, status.index_version = len(index), index.version
                status.index_source = _TIERS.get(index.source, pb.TIER_UNSPECIFIED)
            try:
                status.database_count, status.database_failed = await state.store.counts(spec)
            except Exception as error:
                response.problems.append(f"PostgreSQL unreachable ({type(error).__name__})")
            if state.tiers[name].upstream_down:
                response.problems.append(
                    f"NetSuite fetch of {name} failed: {state.tiers[name].upstream_error}")
            response.entities.append(status)
        response.degraded = bool(response.problems)
        return response

    async def ClearCache(self, request: pb.ClearCacheRequest, context: Any
                         ) -> pb.ClearCacheResponse:
        names = ([_ENTITY_NAMES[request.entity]] if request.entity in _ENTITY_NAMES
                 else list(_ENTITY_NAMES.values()))
        if request.entity and request.entity not in _ENTITY_NAMES:
            raise InvalidArgument("entity", "unknown entity")
        state = self._state
        deleted = 0
        try:  # the generation first: a replica that sees no snapshot then sees the clear
            state.generation = await state.snapshots.next_generation()
            for name in names:
                deleted += await state.snapshots.clear(ENTITIES[name])
        except REDIS_ERRORS:
            raise Unavailable("Redis is unreachable: the cache was not cleared") from None
        for name in names:
            state.tiers[name].drop()
        log.info("cache_cleared", entities=names, deleted_keys=deleted)
        return pb.ClearCacheResponse(
            deleted_keys=deleted,
            cleared=[e for e, n in _ENTITY_NAMES.items() if n in names],
        )

    async def GetDataSourceStatus(self, request: pb.GetDataSourceStatusRequest, context: Any
                                  ) -> pb.GetDataSourceStatusResponse:
        state = self._state
        last = state.client.last_call
        response = pb.GetDataSourceStatusResponse(
            configured=state.settings.data_source,
            active=(pb.DATA_SOURCE_NETSUITE if state.upstream.active == "netsuite"
                    else pb.DATA_SOURCE_SANDBOX),
            credentials_configured=state.upstream.credentials_configured,
            base_url=state.upstream.rest_url, last_call_ok=last.ok, last_error=last.error,
        )
        if last.at is not None:
            response.last_call_time.CopyFrom(timestamp(datetime.fromtimestamp(last.at, UTC)))
        return response

    async def GetCustomerKpis(self, request: pb.GetCustomerKpisRequest, context: Any
                              ) -> pb.GetCustomerKpisResponse:
        row = await self._state.kpis.read()
        built = self._kpis_built
        if built is None or built[0] is not row:  # the message is built once per view row
            built = self._kpis_built = (row, _kpis_message(row.values))
        hours = max(0.0, (datetime.now(UTC) - row.last_updated).total_seconds() / 3600)
        return pb.GetCustomerKpisResponse(kpis=built[1], last_update_time=timestamp(
            row.last_updated), hours_since_update=hours)

    async def RefreshCustomerKpis(self, request: pb.RefreshCustomerKpisRequest, context: Any
                                  ) -> pb.RefreshCustomerKpisResponse:
        row, seconds = await self._state.kpis.refresh("RefreshCustomerKpis")
        return pb.RefreshCustomerKpisResponse(last_update_time=timestamp(row.last_updated),
                                              refresh_duration=duration(seconds))


def _counts(values: Any) -> list[pb.CountByKey]:
    return [pb.CountByKey(key=str(key), count=int(count))
            for key, count in sorted((values or {}).items(), key=lambda kv: (-kv[1], kv[0]))]


def _kpis_message(values: dict[str, Any]) -> pb.CustomerKpis:
    return pb.CustomerKpis(
        total_customers=values["total_customers"], active_customers=values["active_customers"],
        new_customers_30d=values["new_customers_30d"], total_items=values["total_items"],
        active_items=values["active_items"], failed_records=values["failed_records"],
        deleted_records=values["deleted_records"],
        customers_by_country=_counts(values["customers_by_country"]),
        items_by_type=_counts(values["items_by_type"]),
    )


# -- background work -------------------------------------------------------------------------


async def preload(state: CatalogState) -> None:
    """Fills every index from the fastest tier that has data, while the server already serves."""
    for name, tiers in state.tiers.items():
        started = time.perf_counter()
        try:
            index = await tiers.get_index()
        except Unavailable as error:
            log.warning("preload_failed", entity=name, error=error.message)
            continue
        log.info("preloaded", entity=name, tier=index.source, records=len(index),
                 duration_s=round(time.perf_counter() - started, 3))


async def watch_redis(state: CatalogState, runtime: Runtime) -> None:
    """Follows Redis: newer snapshot versions, ClearCache generations, and its health. A poll
    that fails (say, on a key another program wrote) is logged; the next one runs as ever."""
    while True:
        try:
            await _poll_redis(state, runtime)
        except Exception as error:
            log.exception("redis_poll_failed", error=type(error).__name__)
        if not await runtime.tasks.pause(state.settings.version_poll_seconds):
            return  # stopping (even if the cancellation got lost)


async def _poll_redis(state: CatalogState, runtime: Runtime) -> None:
    # this replica's own publishes first: a meta read while one ran is not followed
    publishes = {name: tiers.publishes for name, tiers in state.tiers.items()}
    try:  # metas next: ClearCache bumps the generation before it deletes them
        metas = {name: await state.snapshots.meta(ENTITIES[name]) for name in state.tiers}
        generation = await state.snapshots.generation()
        await _redis_up(state, runtime, True, "")
    except REDIS_ERRORS as error:
        await _redis_up(state, runtime, False, type(error).__name__)
        return
    # 0: Redis lost its data (restarted empty); the replicas' indexes are still good
    if state.generation is not None and generation not in (state.generation, 0):
        for tiers in state.tiers.values():
            tiers.drop()
        log.info("cache_cleared_elsewhere", generation=generation)
        state.generation = generation
        return
    state.generation = generation
    for name, tiers in state.tiers.items():
        try:
            await tiers.follow(metas[name], publishes[name], generation)
        except REDIS_ERRORS:
            pass


async def _redis_up(state: CatalogState, runtime: Runtime, up: bool, error: str) -> None:
    if up == state.redis_ok:
        return
    state.redis_ok, state.redis_error = up, error
    status = (health_pb2.HealthCheckResponse.SERVING if up
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    await runtime.health.set(REDIS_HEALTH, status)
    if up:
        log.info("redis_recovered")
    else:
        log.warning("redis_down_degraded", error=error)


async def _scope_details(state: CatalogState, spec: EntitySpec) -> dict[str, str]:
    live, failed = await state.store.counts(spec)
    cursor = await state.store.cursor(spec)
    index = state.tiers[spec.name].index
    return {
        "total_cached": str(live), "failed_records": str(failed),
        "cursor": cursor.isoformat() if cursor else "",
        "index_records": str(len(index) if index else 0),
        "index_source": index.source if index else "",
    }


async def setup(runtime: Runtime) -> None:
    settings = load(CatalogSettings, runtime.environ)
    settings.validate()
    upstream = resolve_upstream(settings)
    client = NetSuiteClient(
        upstream, zone=settings.zone, page_size=settings.page_size,
        concurrency=settings.concurrency, timeout=settings.request_timeout_seconds,
        max_attempts=settings.max_attempts,
    )
    runtime.on_stop(client.aclose)
    store = CatalogStore(runtime.db)
    snapshots = SnapshotStore(runtime.redis, chunk_bytes=settings.chunk_bytes,
                              ttl_seconds=settings.snapshot_ttl_seconds)
    options = TierOptions(lease_seconds=settings.lease_seconds,
                          upstream_retry_seconds=settings.upstream_retry_seconds)
    tiers = {
        name: EntityTiers(spec, store=store, snapshots=snapshots, client=client,
                          metrics=runtime.metrics, options=options, spawn=runtime.tasks.spawn)
        for name, spec in ENTITIES.items()
    }
    for entity_tiers in tiers.values():
        runtime.on_stop(entity_tiers.close)
    kpis = KpiService(store, max_age=settings.kpi_cache_seconds)
    state = CatalogState(settings, upstream, client, store, snapshots, tiers, kpis)
    runtime.add_servicer(
        pb.DESCRIPTOR.services_by_name["CatalogService"],
        catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server,
        CatalogServicer(state),
    )
    sync = CatalogSync(client=client, store=store, tiers=tiers, kpis=kpis,
                       lookback=timedelta(seconds=settings.lookback_seconds))

    async def customer_details() -> dict[str, str]:
        return await _scope_details(state, ENTITIES["customers"])

    async def item_details() -> dict[str, str]:
        return await _scope_details(state, ENTITIES["items"])

    runtime.sync.add(SyncScope("customers", sync.customers, "NetSuite customers",
                               details=customer_details), default=True)
    runtime.sync.add(SyncScope("items", sync.items, "NetSuite items", details=item_details))
    runtime.sync.add(SyncScope("all", sync.all, "customers, then items",
                               locks=("customers", "items")))
    runtime.sync.add(SyncScope("kpis", sync.kpis, "refresh the customer KPI view"))
    await runtime.health.set(REDIS_HEALTH, health_pb2.HealthCheckResponse.SERVING)
    runtime.tasks.spawn(watch_redis(state, runtime), "catalog-watch-redis")
    if settings.preload:
        runtime.tasks.spawn(preload(state), "catalog-preload")
    log.info("catalog_ready", data_source=upstream.active, base_url=upstream.rest_url)


SERVICE = ServiceDefinition(
    name="catalog",
    default_port=50051,
    setup=setup,
    migrations=Path(__file__).parent / "migrations",
)
