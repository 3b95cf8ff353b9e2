"""The outbox and the workers that drain it, one consumer group per sink.

    timeentries:outbox                        stream: one message per accepted entry version
    ├── group "postgres"  → PostgresSink      upsert batches (idempotent by id + version)
    └── group "zoho"      → ZohoSink          time logs (idempotent: the log id is kept)
    timeentries:dead-letters:{sink}           list: entries a sink refused for good (+ reason)

A :class:`SinkWorker` reads new messages with XREADGROUP, hands the latest version of each
entry to its sink and acknowledges (XACK) only what the sink has committed or refused for good.
Anything else stays pending in the group: after ``reclaim_idle`` seconds (then exponentially
longer, up to ``retry_max``, by delivery count) a worker claims it again (XPENDING + XCLAIM),
also one started after a crash. A user's write while they have unsynced entries bumps
``timeentries:nudges``, which makes the workers retry pending messages at once. Messages every
group has acknowledged are trimmed from the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError, ResponseError

from services.timeentries.hot_store import NUDGES, OUTBOX, HotStore
from services.timeentries.model import Entry
from services.timeentries.store import latest_versions

__all__ = [
    "Backlog",
    "DeliveryResult",
    "Outbox",
    "Sink",
    "SinkWorker",
    "dead_letter_key",
]

log = structlog.get_logger("outbox")


def dead_letter_key(sink: str) -> str:
    return f"timeentries:dead-letters:{sink}"


@dataclass
class DeliveryResult:
    """What a sink did with a batch: committed, refused for good (with reasons), or neither
    (left for a retry)."""

    done: list[Entry] = field(default_factory=list)
    rejected: list[tuple[Entry, str]] = field(default_factory=list)


class Sink(Protocol):
    name: str  # the consumer group
    flag: str  # the entry-hash flag set when it has a version ('pg' | 'zoho')
    batch_size: int

    async def deliver(self, entries: list[Entry]) -> DeliveryResult: ...


@dataclass(frozen=True)
class Backlog:
    target: str
    pending: int
    oldest_age_seconds: float
    failed: int
    dead_letters: list[dict[str, Any]]


def _id_ms(message_id: str) -> int:
    return int(message_id.split("-", 1)[0])


class Outbox:
    """Stream-level operations shared by the workers, the backlog report and admin retries."""

    def __init__(self, redis: aioredis.Redis, groups: Sequence[str]) -> None:
        self.redis = redis
        self.groups = tuple(groups)

    async def ensure_groups(self) -> None:
        """Every sink's group exists from the stream's start, before any write can be trimmed."""
        for group in self.groups:
            try:
                await self.redis.xgroup_create(OUTBOX, group, id="0", mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    async def _first_needed(self, group: str, info: dict[str, Any]) -> tuple[int, str | None]:
        """(undelivered count, id of the oldest message the group still needs)."""
        last = info.get("last-delivered-id") or "0-0"
        lag = info.get("lag")
        after = await self.redis.xrange(OUTBOX, min=f"({last}", max="+", count=1)
        first_undelivered = after[0][0] if after else None
        if lag is None:
            lag = 0
            cursor = f"({last}"
            while True:
                chunk = await self.redis.xrange(OUTBOX, min=cursor, max="+", count=1000)
                lag += len(chunk)
                if len(chunk) < 1000:
                    break
                cursor = f"({chunk[-1][0]}"
        summary = await self.redis.xpending(OUTBOX, group)
        oldest = summary.get("min") if summary.get("pending") else None
        candidates = [i for i in (oldest, first_undelivered) if i]
        return int(lag), (min(candidates, key=_id_ms) if candidates else None)

    async def backlog(self, now_ms: int | None = None) -> list[Backlog]:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        groups = {g["name"]: g for g in await self._groups()}
        report: list[Backlog] = []
        for group in self.groups:
            info = groups.get(group, {})
            undelivered, oldest = await self._first_needed(group, info) if info else (0, None)
            letters = await self.redis.lrange(dead_letter_key(group), 0, 19)
            report.append(Backlog(
                target=group,
                pending=int(info.get("pending", 0)) + undelivered,
                oldest_age_seconds=max(0, now_ms - _id_ms(oldest)) / 1000 if oldest else 0.0,
                failed=await self.redis.llen(dead_letter_key(group)),
                dead_letters=[json.loads(letter) for letter in letters],
            ))
        return report

    async def _groups(self) -> list[dict[str, Any]]:
        try:
            groups: list[dict[str, Any]] = await self.redis.xinfo_groups(OUTBOX)
        except ResponseError:
            return []
        return groups

    async def retry_dead_letters(self, group: str) -> int:
        """Puts every dead letter of ``group`` back in the outbox (both sinks see it again;
        both are idempotent, so the one that has it skips it)."""
        key = dead_letter_key(group)
        moved = 0
        while (raw := await self.redis.lindex(key, 0)) is not None:
            entry = json.loads(raw)["entry"]
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xadd(OUTBOX, {"entry": json.dumps(entry, separators=(",", ":"))})
                pipe.lpop(key)
                await pipe.execute()
            moved += 1
        return moved

    async def trim(self) -> None:
        """Drops messages that every group has acknowledged."""
        groups = {g["name"]: g for g in await self._groups()}
        if set(self.groups) - set(groups):
            return  # a group is missing: keep everything
        needed: list[str] = []
        for group in self.groups:
            _, oldest = await self._first_needed(group, groups[group])
            if oldest is None:
                last = groups[group].get("last-delivered-id") or "0-0"
                ms, seq = last.split("-")
                oldest = f"{ms}-{int(seq) + 1}"
            needed.append(oldest)
        minimum = min(needed, key=lambda i: (_id_ms(i), int(i.split("-")[1])))
        await self.redis.xtrim(OUTBOX, minid=minimum, approximate=False)


def consumer_name(sink: str) -> str:
    return f"{sink}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class SinkWorker:
    """Drains one sink's consumer group until cancelled."""

    def __init__(
        self, redis: aioredis.Redis, hot: HotStore, outbox: Outbox, sink: Sink, *,
        reclaim_idle: float = 15.0, retry_max: float = 300.0, block_ms: int = 1000,
        consumer: str | None = None,
    ) -> None:
        self.redis = redis
        self.hot = hot
        self.outbox = outbox
        self.sink = sink
        self.reclaim_idle = reclaim_idle
        self.retry_max = retry_max
        self.block_ms = block_ms
        self.consumer = consumer or consumer_name(sink.name)
        self.delivered = 0
        self.failures = 0
        self._next_reclaim = 0.0
        self._next_trim = 0.0
        self._nudges_seen: str | None = None

    def backoff(self, deliveries: int) -> float:
        """How long a message delivered ``deliveries`` times waits before the next try."""
        return min(self.retry_max, self.reclaim_idle * 2.0 ** max(0, deliveries - 1))

    async def run(self) -> None:
        log.info("sink_worker_started", sink=self.sink.name, consumer=self.consumer)
        failures = 0
        task = asyncio.current_task()
        while True:
            # A cancellation that a library turned into another error (Python 3.11's timeouts
            # can, when they expire at the same moment) still stops the worker.
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            try:
                await self.step()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                self.failures += 1
                pause = min(self.retry_max, 0.2 * 2 ** min(failures, 8))
                log.warning("sink_batch_failed", sink=self.sink.name, error_type=type(error)
                            .__name__, error=str(error)[:200], retry_in=round(pause, 2))
                await asyncio.sleep(pause)

    async def step(self) -> int:
        """One round: retries that are due, then a batch of new messages."""
        handled = 0
        now = time.monotonic()
        nudges = await self.redis.get(NUDGES)
        nudged = nudges != self._nudges_seen and self._nudges_seen is not None
        self._nudges_seen = nudges
        if nudged or now >= self._next_reclaim:
            handled += await self.reclaim(force=nudged)
            self._next_reclaim = now + max(0.05, self.reclaim_idle / 2)
        if now >= self._next_trim:
            with contextlib.suppress(RedisError):
                await self.outbox.trim()
            self._next_trim = now + 10.0
        answer = await self.redis.xreadgroup(
            self.sink.name, self.consumer, {OUTBOX: ">"}, count=self.sink.batch_size,
            block=self.block_ms,
        )
        for _stream, messages in answer or []:
            handled += await self.process(messages)
        return handled

    async def reclaim(self, *, force: bool = False, min_idle: float | None = None) -> int:
        """Claims and processes pending messages that waited long enough (``force``: whatever
        their backoff, once idle ``min_idle`` — a second by default)."""
        idle = min_idle if min_idle is not None else (1.0 if force else self.reclaim_idle)
        handled = 0
        start = "-"
        while True:
            pending = await self.redis.xpending_range(
                OUTBOX, self.sink.name, min=start, max="+", count=self.sink.batch_size,
                idle=int(idle * 1000),
            )
            if not pending:
                return handled
            due = [p["message_id"] for p in pending
                   if force or p["time_since_delivered"] >= self.backoff(p["times_delivered"])
                   * 1000]
            if due:
                claimed = await self.redis.xclaim(
                    OUTBOX, self.sink.name, self.consumer, int(idle * 1000), due
                )
                gone = set(due) - {message_id for message_id, _ in claimed}
                if gone:  # trimmed or deleted messages: nothing left to deliver
                    await self.redis.xack(OUTBOX, self.sink.name, *gone)
                handled += await self.process(claimed)
            if len(pending) < self.sink.batch_size:
                return handled
            last = pending[-1]["message_id"]
            ms, seq = last.split("-")
            start = f"{ms}-{int(seq) + 1}"

    async def process(self, messages: list[tuple[str, dict[str, str] | None]]) -> int:
        if not messages:
            return 0
        parsed: list[tuple[str, Entry]] = []
        unreadable: list[str] = []
        for message_id, fields in messages:
            try:
                parsed.append((message_id, Entry.from_json((fields or {})["entry"])))
            except (KeyError, ValueError, TypeError):
                unreadable.append(message_id)
        result = await self.sink.deliver(latest_versions(entry for _, entry in parsed))
        await self.hot.mark_synced(self.sink.flag, result.done)
        settled = {entry.id for entry in result.done} | {e.id for e, _ in result.rejected}
        acked = [message_id for message_id, entry in parsed if entry.id in settled] + unreadable
        async with self.redis.pipeline(transaction=True) as pipe:
            for entry, reason in result.rejected:
                pipe.rpush(dead_letter_key(self.sink.name), json.dumps({
                    "entry": json.loads(entry.to_json()), "reason": reason[:500],
                    "time": time.time(),
                }))
            if acked:
                pipe.xack(OUTBOX, self.sink.name, *acked)
            await pipe.execute()
        if result.rejected:
            log.warning("sink_rejected", sink=self.sink.name, count=len(result.rejected),
                        first_reason=result.rejected[0][1][:200])
        self.delivered += len(result.done)
        return len(acked)
