"""The Redis tier: a full snapshot of an entity, chunked, versioned, with a fetch lease.

Keys (the seed's names): ``netsuite:customers:meta`` (JSON: version, chunks, total, fields,
fetched_at, bytes) points at ``netsuite:customers:{version}:{n}`` chunks (JSON arrays of rows,
values in ``fields`` order, about ``chunk_bytes`` each). A new version's chunks are written
before its meta, and the old chunks expire a minute later, so a reader never sees a mix.
Everything has the snapshot TTL (a week by default). ``netsuite:customers:lease`` is the
cross-replica single-flight lease of an upstream fetch; ``netsuite:cache:generation`` moves on
each ClearCache so every replica drops its index.

A meta or chunk that cannot be read (corrupt, or another program's format under the same key)
is no snapshot: readers fall back to the next tier, and the next write replaces it.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.exceptions
import structlog

from services.catalog.records import EntitySpec, Record
from services.catalog.search import collector_paused

__all__ = ["EncodedChunks", "SnapshotMeta", "SnapshotStore"]

log = structlog.get_logger("catalog.snapshot")

OLD_CHUNKS_GRACE_SECONDS = 60
SIZE_SAMPLE_ROWS = 500
GENERATION_KEY = "netsuite:cache:generation"
_SET_META_IF_GENERATION = """
if ARGV[1] ~= '' and (redis.call('get', KEYS[1]) or '0') ~= ARGV[1] then return 0 end
redis.call('set', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class SnapshotMeta:
    version: int
    chunks: int
    total: int
    fields: tuple[str, ...]
    fetched_at: datetime
    bytes: int

    def as_json(self) -> str:
        return json.dumps({"version": self.version, "chunks": self.chunks, "total": self.total,
                           "fields": list(self.fields), "fetched_at": self.fetched_at.isoformat(),
                           "bytes": self.bytes})

    @classmethod
    def from_json(cls, raw: str) -> SnapshotMeta:
        """The meta :meth:`as_json` wrote; ValueError (or KeyError, TypeError) for anything
        else."""
        data = json.loads(raw)
        meta = cls(int(data["version"]), int(data["chunks"]), int(data["total"]),
                   tuple(data["fields"]), datetime.fromisoformat(data["fetched_at"]),
                   int(data.get("bytes", 0)))
        # a data set is at least one chunk (an empty one is "[]"); fetch times are aware
        if (meta.version < 1 or meta.chunks < 1 or meta.total < 0
                or meta.fetched_at.tzinfo is None):
            raise ValueError("not a snapshot meta")
        return meta


@dataclass(frozen=True)
class EncodedChunks:
    """A data set encoded for the snapshot, not stored yet."""

    bodies: tuple[str, ...]
    total: int


def encode_rows(rows: list[list[Any]]) -> str:
    """Rows as compact JSON text: orjson (about 9× the standard library's speed at 50,000
    customers), or the standard library for what orjson refuses (a lone surrogate, an integer
    beyond 64 bits). Both are read by :func:`decode_rows` and by any JSON reader."""
    try:
        return orjson.dumps(rows).decode()
    except TypeError:  # orjson.JSONEncodeError is one, and so is what it raises for these
        return json.dumps(rows, separators=(",", ":"))


def decode_rows(body: str) -> list[list[Any]]:
    """A chunk's rows: orjson (about twice the standard library's speed), or the standard
    library for text only it reads (an escaped lone surrogate written by :func:`encode_rows`'
    fallback)."""
    try:
        rows: list[list[Any]] = orjson.loads(body)
    except orjson.JSONDecodeError:
        rows = json.loads(body)
    return rows


class SnapshotStore:
    def __init__(self, redis: aioredis.Redis, *, chunk_bytes: int, ttl_seconds: int) -> None:
        self._redis = redis
        self.chunk_bytes = chunk_bytes
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def meta_key(spec: EntitySpec) -> str:
        return f"netsuite:{spec.name}:meta"

    @staticmethod
    def chunk_key(spec: EntitySpec, version: int, number: int) -> str:
        return f"netsuite:{spec.name}:{version}:{number}"

    @staticmethod
    def lease_key(spec: EntitySpec) -> str:
        return f"netsuite:{spec.name}:lease"

    async def meta(self, spec: EntitySpec) -> SnapshotMeta | None:
        """The current snapshot's meta; None when there is none, or it cannot be read."""
        key = self.meta_key(spec)
        try:
            raw = await self._redis.get(key)
        except redis.exceptions.ResponseError as error:
            if not str(error).startswith("WRONGTYPE"):
                raise
            # another program's hash or list under our key
            log.warning("snapshot_meta_unreadable", key=key, error="WRONGTYPE")
            return None
        if not raw:
            return None
        try:
            return SnapshotMeta.from_json(raw)
        except (KeyError, TypeError, ValueError) as error:
            log.warning("snapshot_meta_unreadable", key=key, error=type(error).__name__)
            return None

    async def ttl(self, spec: EntitySpec) -> float | None:
        left = await self._redis.pttl(self.meta_key(spec))
        return left / 1000 if left and left > 0 else None

    async def write(self, spec: EntitySpec, records: list[Record], fetched_at: datetime,
                    generation: int | None = None) -> SnapshotMeta | None:
        """Stores ``records`` as a new version and returns its meta (None: see :meth:`store`,
        a ClearCache moved ``generation`` on)."""
        # off the event loop: encoding 50,000 records takes long enough to stall searches
        chunks = await asyncio.to_thread(self.encode, spec, records)
        return await self.store(spec, chunks, fetched_at, generation)

    async def store(self, spec: EntitySpec, chunks: EncodedChunks, fetched_at: datetime,
                    generation: int | None = None) -> SnapshotMeta | None:
        """Stores chunks made by :meth:`encode` as a new version and returns its meta. With
        ``generation`` (what :meth:`generation` said when the data began to be fetched),
        nothing is stored and None returned if a ClearCache has moved it on since."""
        bodies = chunks.bodies
        version = int(await self._redis.incr(f"netsuite:{spec.name}:version"))
        meta = SnapshotMeta(version, len(bodies), chunks.total, spec.fields, fetched_at,
                            sum(len(body) for body in bodies))
        previous = await self.meta(spec)
        keys = [self.chunk_key(spec, version, number) for number in range(len(bodies))]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, body in zip(keys, bodies, strict=True):
                pipe.set(key, body, ex=self.ttl_seconds)
            await pipe.execute()
        # the meta makes the version current: only if no ClearCache came in between
        stored = await self._redis.eval(
            _SET_META_IF_GENERATION, 2, GENERATION_KEY, self.meta_key(spec),
            "" if generation is None else str(generation), meta.as_json(), self.ttl_seconds)
        if not stored:
            await self._redis.delete(*keys)
            return None
        if previous is not None:
            async with self._redis.pipeline(transaction=False) as pipe:
                for number in range(previous.chunks):
                    pipe.expire(self.chunk_key(spec, previous.version, number),
                                OLD_CHUNKS_GRACE_SECONDS)
                await pipe.execute()
        return meta

    def encode(self, spec: EntitySpec, records: list[Record]) -> EncodedChunks:
        """The records as JSON arrays of rows, about ``chunk_bytes`` each, every row encoded
        once: the rows per chunk come from the size of a sample spread over the data set.
        Plain CPU work with no I/O: callers run it in a worker thread."""
        fields = spec.fields
        rows = [[record.get(name) for name in fields] for record in records]
        if not rows:
            return EncodedChunks(("[]",), 0)
        sample = rows[::max(1, len(rows) // SIZE_SAMPLE_ROWS)]
        row_bytes = len(encode_rows(sample)) / len(sample)
        per_chunk = max(1, int(self.chunk_bytes / row_bytes))
        return EncodedChunks(tuple(encode_rows(rows[start:start + per_chunk])
                                   for start in range(0, len(rows), per_chunk)), len(rows))

    async def read(self, spec: EntitySpec) -> tuple[list[Record], SnapshotMeta] | None:
        """The current snapshot, or None when there is none (or a chunk has gone)."""
        meta = await self.meta(spec)
        if meta is None or meta.fields != spec.fields:
            return None
        keys = [self.chunk_key(spec, meta.version, n) for n in range(meta.chunks)]
        bodies = await self._redis.mget(keys) if keys else []
        if any(body is None for body in bodies):
            return None
        fields = meta.fields
        try:
            with collector_paused():
                records = [dict(zip(fields, row, strict=True))
                           for body in bodies for row in decode_rows(body)]
        except (TypeError, ValueError) as error:  # not JSON, or rows of another shape
            log.warning("snapshot_unreadable", entity=spec.name, version=meta.version,
                        error=type(error).__name__)
            return None
        if len(records) != meta.total:
            log.warning("snapshot_unreadable", entity=spec.name, version=meta.version,
                        error="row count differs from the meta's total")
            return None
        return records, meta

    async def clear(self, spec: EntitySpec) -> int:
        """Deletes the snapshot (meta and every chunk of any version)."""
        keys = [self.meta_key(spec)]
        async for key in self._redis.scan_iter(match=f"netsuite:{spec.name}:*:*", count=500):
            keys.append(key)
        return int(await self._redis.delete(*keys))

    async def generation(self) -> int:
        return int(await self._redis.get(GENERATION_KEY) or 0)

    async def next_generation(self) -> int:
        return int(await self._redis.incr(GENERATION_KEY))

    async def acquire_lease(self, spec: EntitySpec, token: str, seconds: float) -> bool:
        return bool(await self._redis.set(self.lease_key(spec), token, nx=True,
                                          px=int(seconds * 1000)))

    async def lease_holder(self, spec: EntitySpec) -> str | None:
        holder: Any = await self._redis.get(self.lease_key(spec))
        return str(holder) if holder else None

    async def release_lease(self, spec: EntitySpec, token: str) -> None:
        await self._redis.eval(_RELEASE, 1, self.lease_key(spec), token)

    async def ping(self) -> float:
        started = time.perf_counter()
        await self._redis.ping()
        return time.perf_counter() - started

