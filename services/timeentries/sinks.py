"""The two sinks the outbox workers feed: PostgreSQL (source of truth) and Zoho (time logs)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import structlog

from services.timeentries.hot_store import HotStore
from services.timeentries.hot_window import prove_hot_windows
from services.timeentries.model import Entry
from services.timeentries.outbox import DeliveryResult
from services.timeentries.projects import USER_MAP
from services.timeentries.store import EntryStore
from services.timeentries.zoho import ZohoClient
from shared.errors import UpstreamError
from shared.upstream import UpstreamAuthError, UpstreamHttpError

__all__ = ["ZOHO_LOGS", "PostgresSink", "ZohoSink"]

log = structlog.get_logger("sinks")

ZOHO_LOGS = "timeentries:zoho:logs"  # hash: entry id → {"log_id", "version", "project_id"}
_RETRYABLE_4XX = frozenset({401, 403, 408, 409, 425, 429})


def _attempt_key(entry_id: str) -> str:
    return f"timeentries:zoho:attempt:{entry_id}"


def _lock_key(entry_id: str) -> str:
    return f"timeentries:zoho:lock:{entry_id}"


class PostgresSink:
    name = "postgres"
    flag = "pg"

    def __init__(self, store: EntryStore, hot: HotStore, batch_size: int = 500) -> None:
        self.store = store
        self.hot = hot
        self.batch_size = batch_size

    async def deliver(self, entries: list[Entry]) -> DeliveryResult:
        """One upsert statement for the batch; a row PostgreSQL refuses (a constraint) is
        isolated by retrying the batch one entry at a time. Connection failures propagate:
        the batch stays pending. Then the hot-window index of each user in the batch is proven
        complete if it is not yet (services/timeentries/hot_window.py)."""
        result = await self._upsert(entries)
        await prove_hot_windows(self.hot, self.store, (entry.email for entry in result.done))
        return result

    async def _upsert(self, entries: list[Entry]) -> DeliveryResult:
        try:
            await self.store.upsert(entries)
            return DeliveryResult(done=list(entries))
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
            if len(entries) == 1:
                raise
        result = DeliveryResult()
        for entry in entries:
            try:
                await self.store.upsert([entry])
                result.done.append(entry)
            except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as error:
                result.rejected.append((entry, f"PostgreSQL refused it: {type(error).__name__}"))
        return result


class ZohoSink:
    """Pushes each entry's latest version as a Zoho time log, exactly once.

    The log id and the version it holds are kept in ``timeentries:zoho:logs``; a version that
    is not newer is skipped. Before a create, ``timeentries:zoho:attempt:{id}`` records where
    the log is being created: if the answer is lost (timeout, crash), the next try finds the
    log by the marker in its notes instead of creating a second one.
    """

    name = "zoho"
    flag = "zoho"

    def __init__(
        self, redis: aioredis.Redis, client: ZohoClient, batch_size: int = 50,
        concurrency: int = 4, lock_seconds: float = 65.0,
    ) -> None:
        self.redis = redis
        self.client = client
        self.batch_size = batch_size
        self._slots = asyncio.Semaphore(concurrency)
        self._lock_ms = int(lock_seconds * 1000)
        self._holder = uuid.uuid4().hex  # this sink's lock value: its own stale locks are retaken
        self._owners: dict[str, str] = {}
        self._owners_loaded = 0.0

    async def deliver(self, entries: list[Entry]) -> DeliveryResult:
        await self._load_owners()
        outcomes = await asyncio.gather(*(self._push_one(entry) for entry in entries))
        result = DeliveryResult()
        for entry, outcome in zip(entries, outcomes, strict=True):
            if outcome is None:
                result.done.append(entry)
            elif outcome != "retry":
                result.rejected.append((entry, outcome))
        return result

    async def _load_owners(self) -> None:
        if time.monotonic() - self._owners_loaded < 60 and self._owners:
            return
        users = await self.redis.hgetall(USER_MAP)
        self._owners = {email: user_id for user_id, email in users.items()}
        self._owners_loaded = time.monotonic()

    async def _push_one(self, entry: Entry) -> str | None:
        """None when done, "retry" to try later, else why Zoho refused it for good."""
        async with self._slots:
            lock = _lock_key(entry.id)
            if not await self.redis.set(lock, self._holder, nx=True, px=self._lock_ms) and (
                    await self.redis.get(lock) != self._holder):
                return "retry"  # another worker is pushing this entry right now
            try:
                await self._push(entry)
                return None
            except UpstreamAuthError as error:
                log.warning("zoho_auth_failed", entry_id=entry.id, error=str(error)[:200])
                return "retry"
            except UpstreamHttpError as error:
                if error.status in _RETRYABLE_4XX:
                    return "retry"
                return f"Zoho refused it: {error.message}"
            except UpstreamError as error:
                log.info("zoho_push_deferred", entry_id=entry.id, error=str(error)[:200])
                return "retry"
            finally:
                await self.redis.delete(lock)

    async def _push(self, entry: Entry) -> None:
        raw_state, raw_attempt = await self.redis.execute_command(
            "EVAL", "return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('GET', KEYS[2])}",
            2, ZOHO_LOGS, _attempt_key(entry.id), entry.id,
        ) or (None, None)
        state: dict[str, Any] = json.loads(raw_state) if raw_state else {}
        if state and int(state["version"]) >= entry.version:
            return
        log_id: str | None = state.get("log_id")
        log_project: str | None = state.get("project_id")
        if log_id is None and raw_attempt:
            attempt = json.loads(raw_attempt)
            log_id = await self.client.find_log(attempt["project_id"], attempt["date"], entry.id)
            log_project = attempt["project_id"]
        if log_id is not None and (entry.deleted or log_project != entry.project_id):
            await self.client.delete_log(log_project or entry.project_id, log_id)
            log_id = None
        if not entry.deleted:
            owner = self._owners.get(entry.email)
            if log_id is not None:
                try:
                    await self.client.update_log(log_id, entry, owner)
                except UpstreamHttpError as error:
                    if error.status != 404:
                        raise
                    log_id = None  # removed in Zoho meanwhile: create it again
            if log_id is None:
                await self.redis.set(_attempt_key(entry.id), json.dumps(
                    {"project_id": entry.project_id, "date": entry.date}))
                log_id = await self.client.create_log(entry, owner)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(ZOHO_LOGS, entry.id, json.dumps({
                "log_id": log_id, "version": entry.version, "project_id": entry.project_id}))
            pipe.delete(_attempt_key(entry.id))
            await pipe.execute()
