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
from shared.lua import LuaScript, RedisPyRunner
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


# Taking an entry to push: its lock (this sink's own stale lock is taken again), and what is
# known of its log. KEYS: lock, logs hash, attempt marker. ARGV: holder, lock ms, entry id.
# Answers {0} when another worker holds the lock, else {1, log state JSON, attempt JSON}.
_TAKE = LuaScript("""
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, redis.call('HGET', KEYS[2], ARGV[3]), redis.call('GET', KEYS[3])}
""")

# Releasing the lock only if it is still ours: one that expired meanwhile may be another's.
# KEYS: lock. ARGV: holder.
_RELEASE = LuaScript("""
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
""")

# A log created or updated: its state kept, the attempt marker gone, the lock released (if
# still ours). KEYS: logs hash, attempt marker, lock. ARGV: entry id, log state JSON, holder.
_DONE = LuaScript("""
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[2])
if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
""")


class ZohoSink:
    """Pushes each entry's latest version as a Zoho time log, exactly once.

    The log id and the version it holds are kept in ``timeentries:zoho:logs``; a version that
    is not newer is skipped. Before a create, ``timeentries:zoho:attempt:{id}`` records where
    the log is being created: if the answer is lost (timeout, crash), the next try finds the
    log by the marker in its notes instead of creating a second one. An entry is pushed under
    a lock (``timeentries:zoho:lock:{id}``), so two workers never push it at once. Redis round
    trips per entry: two, three when a log is created (the marker is written first).
    """

    name = "zoho"
    flag = "zoho"

    def __init__(
        self, redis: aioredis.Redis, client: ZohoClient, batch_size: int = 50,
        concurrency: int = 4, lock_seconds: float = 65.0,
    ) -> None:
        self.redis = redis
        self.scripts = RedisPyRunner(redis)
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
            taken = await self.scripts.run(
                _TAKE, keys=[lock, ZOHO_LOGS, _attempt_key(entry.id)],
                args=[self._holder, self._lock_ms, entry.id])
            if not taken[0]:
                return "retry"  # another worker is pushing this entry right now
            released = False
            try:
                released = await self._push(entry, taken[1], taken[2])
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
                if not released:
                    await self.scripts.run(_RELEASE, keys=[lock], args=[self._holder])

    async def _push(self, entry: Entry, raw_state: str | None, raw_attempt: str | None) -> bool:
        """Brings Zoho's log of ``entry`` up to its version; True once its state is kept and
        the lock released, False when there was nothing to do (the lock is still held)."""
        state: dict[str, Any] = json.loads(raw_state) if raw_state else {}
        if state and int(state["version"]) >= entry.version:
            return False
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
        await self.scripts.run(
            _DONE, keys=[ZOHO_LOGS, _attempt_key(entry.id), _lock_key(entry.id)],
            args=[entry.id, json.dumps({"log_id": log_id, "version": entry.version,
                                        "project_id": entry.project_id}), self._holder])
        return True
