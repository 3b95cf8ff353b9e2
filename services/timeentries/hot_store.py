"""Redis: the hot copy of recent entries and the durable outbox, written in one script.

Keys (seed names kept where the seed system had them)::

    entry:{uuid}                        hash: the entry, its version, sink flags pg/zoho, synced
    user:{email}:entries:by-date        sorted set: entry ids scored by day number (date order)
    user:{email}:entries:unsynced       set: ids whose current version is not in every sink
    user:{email}:projects               set: project ids the user may use (+ a "loaded" marker)
    timeentries:outbox                  stream: one message per accepted version (JSON entry)
    timeentries:idempotency:{email}:{request id}  string: the entry id a request created
    timeentries:nudges                  counter: bumped by a write of a user with unsynced entries
    timeentries:data-token:{email}      string: a unique token naming the state of the user's
                                        index and entry hashes (see "Data version" below)

The by-date index also holds two kinds of bookkeeping members below every day number (scores
≤ 0, so a date range never returns them): ``-complete`` (score 0) says the index has been proven
to hold every live entry dated in the hot window, and ``-proving:{nonce}`` (score -1) marks a
proof in progress (see :meth:`HotStore.begin_proof`). A lost or recreated index loses them, so a
recreated index is never taken as complete.

Data version: every script that changes anything a list can show (an entry hash, the index,
the completeness marker, the sink flags) sets ``timeentries:data-token:{email}`` to a fresh
token given by the caller (:func:`unique_token`), in the same script. So a replica that holds a
ListTimeEntries answer built at token T (read with a complete index) may reuse it while a GET
of the token still says T: nothing the answer shows has changed since, not even the
completeness marker. (An index lost meanwhile changes no entry: its next write or read sets a
new token.) No token is ever handed out twice, and none is counted in Redis, so no state can
come back to an old token: not after the key expired or was lost (the next read or write sets
a new one), nor after Redis restarted with its last writes lost (AOF ``everysec``).

A replica need not even GET the token while it hears of every change to it: Redis tracking
(:mod:`shared.redis_invalidation`, prefix :data:`DATA_TOKEN_PREFIX`) names each token key that
was set, deleted or expired, and :func:`email_of_data_token_key` turns it into the user whose
answers are no longer trusted; until then, and while that feed is connected, a held answer is
served from memory (see the README's "Per-replica list cache").

Every write is one Lua script, so the hash, the index, the TTLs and the outbox message are
written together or not at all (and, with AOF ``appendfsync always``, are on disk before the
caller is answered).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import redis.asyncio as aioredis

from services.timeentries.model import Entry
from shared.ids import UniqueIds
from shared.lua import LuaScript, RedisPyRunner, RedisRunner

__all__ = [
    "DATA_TOKEN_PREFIX",
    "INDEX_COMPLETE",
    "NUDGES",
    "OUTBOX",
    "PROJECTS_LOADED",
    "HotEntry",
    "HotRange",
    "HotRows",
    "HotStore",
    "WriteResult",
    "by_date_key",
    "data_token_key",
    "email_of_data_token_key",
    "entry_key",
    "hot_window_start",
    "projects_key",
    "unique_token",
    "unsynced_key",
]

OUTBOX = "timeentries:outbox"
NUDGES = "timeentries:nudges"
PROJECTS_LOADED = "-"  # member of user:{email}:projects meaning "this set was loaded"
IDEMPOTENCY_TTL = 24 * 3600
INDEX_COMPLETE = "-complete"  # by-date member (score 0): the hot window is complete in Redis
PROVING_PREFIX = "-proving:"  # by-date member (score -1): a completeness proof in progress


def entry_key(entry_id: str) -> str:
    return f"entry:{entry_id}"


def by_date_key(email: str) -> str:
    return f"user:{email}:entries:by-date"


def unsynced_key(email: str) -> str:
    return f"user:{email}:entries:unsynced"


# The data tokens have a prefix of their own, the one the invalidation feed tracks: a create
# changes three per-user keys (index, unsynced set, token), and only the token matters to the
# feed, so Redis sends it nothing else (less work for Redis and for every replica).
DATA_TOKEN_PREFIX = "timeentries:data-token:"


def data_token_key(email: str) -> str:
    return f"{DATA_TOKEN_PREFIX}{email}"


def email_of_data_token_key(key: str) -> str | None:
    """The user whose data token ``key`` holds; None for any other key."""
    if key.startswith(DATA_TOKEN_PREFIX):
        return key[len(DATA_TOKEN_PREFIX):] or None
    return None


unique_token = UniqueIds()
"""A string no process ever handed out before (data tokens, proof nonces), with no system call
per token: reading os.urandom twice per ListTimeEntries showed in its profile."""


def projects_key(email: str) -> str:
    return f"user:{email}:projects"


def idempotency_key(email: str, request_id: str) -> str:
    return f"timeentries:idempotency:{email}:{request_id}"


# Builds the outbox payload from the entry hash `h` (a flat HGETALL list turned into a table).
_PRELUDE = """
local function as_table(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
local function payload(t)
  return cjson.encode({
    id = t.id, email = t.email, project_id = t.project_id, date = t.date,
    minutes = tonumber(t.minutes), description = t.description, billable = t.billable == '1',
    version = tonumber(t.version), deleted = t.deleted == '1',
    create_time = t.create_time, update_time = t.update_time})
end
local function check_project(projects_key, project)
  if redis.call('EXISTS', projects_key) == 0 then return 'cold' end
  if redis.call('SISMEMBER', projects_key, project) == 0 then return 'noaccess' end
  return nil
end
local function bump(token_key, token, ttl)
  redis.call('SET', token_key, token, 'EX', ttl)
end
local function pending(unsynced_key, nudges_key, email, id, ttl)
  if redis.call('SCARD', unsynced_key) > 0 then redis.call('INCR', nudges_key) end
  redis.call('SADD', unsynced_key, id)
  redis.call('EXPIRE', unsynced_key, ttl)
end
"""

# KEYS: entry, by-date, outbox, idempotency, projects, unsynced, nudges, data token
# ARGV: id, email, project, date, minutes, description, billable, score, now, ttl,
#       use idempotency (1/0), idempotency ttl, data token
_CREATE = _PRELUDE + """
if ARGV[11] == '1' then
  local existing = redis.call('GET', KEYS[4])
  if existing then return {'duplicate', existing} end
end
local problem = check_project(KEYS[5], ARGV[3])
if problem then return {problem} end
local fields = {'id', ARGV[1], 'email', ARGV[2], 'project_id', ARGV[3], 'date', ARGV[4],
  'minutes', ARGV[5], 'description', ARGV[6], 'billable', ARGV[7], 'version', '1',
  'deleted', '0', 'create_time', ARGV[9], 'update_time', ARGV[9], 'synced', '0', 'pg', '0',
  'zoho', '0'}
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[10])
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[10])
pending(KEYS[6], KEYS[7], ARGV[2], ARGV[1], ARGV[10])
redis.call('XADD', KEYS[3], '*', 'entry', payload(as_table(fields)))
if ARGV[11] == '1' then redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[12]) end
bump(KEYS[8], ARGV[13], ARGV[10])
return {'ok'}
"""

# KEYS: entry, by-date, outbox, projects, unsynced, nudges, data token
# ARGV: email, expected version, now, ttl, delete (1/0), seed JSON ('' = none), new score
#       ('' = date unchanged), data token, then field/value pairs to change
_CHANGE = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[6] == '' then return {'missing'} end
  local seed = cjson.decode(ARGV[6])
  redis.call('HSET', KEYS[1], 'id', seed.id, 'email', seed.email, 'project_id', seed.project_id,
    'date', seed.date, 'minutes', tostring(seed.minutes), 'description', seed.description,
    'billable', seed.billable and '1' or '0', 'version', tostring(seed.version),
    'deleted', seed.deleted and '1' or '0', 'create_time', seed.create_time,
    'update_time', seed.update_time, 'synced', '1', 'pg', '1', 'zoho', '1')
  bump(KEYS[7], ARGV[8], ARGV[4])
end
local t = as_table(redis.call('HGETALL', KEYS[1]))
if t.email ~= ARGV[1] or t.deleted == '1' then return {'notfound'} end
if t.version ~= ARGV[2] then return {'conflict', t.version} end
local changes = {}
for i = 9, #ARGV, 2 do
  changes[#changes + 1] = ARGV[i]
  changes[#changes + 1] = ARGV[i + 1]
  t[ARGV[i]] = ARGV[i + 1]
end
if ARGV[5] ~= '1' and t.project_id ~= nil then
  for i = 1, #changes, 2 do
    if changes[i] == 'project_id' then
      local problem = check_project(KEYS[4], changes[i + 1])
      if problem then return {problem} end
    end
  end
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
t.version = tostring(version)
t.update_time = ARGV[3]
if ARGV[5] == '1' then
  t.deleted = '1'
  changes[#changes + 1] = 'deleted'
  changes[#changes + 1] = '1'
  redis.call('ZREM', KEYS[2], t.id)
elseif ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[7], t.id)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('HSET', KEYS[1], 'update_time', ARGV[3], 'synced', '0', 'pg', '0', 'zoho', '0',
  unpack(changes))
redis.call('EXPIRE', KEYS[1], ARGV[4])
pending(KEYS[5], KEYS[6], ARGV[1], t.id, ARGV[4])
redis.call('XADD', KEYS[3], '*', 'entry', payload(t))
bump(KEYS[7], ARGV[8], ARGV[4])
t.synced = '0'
local flat = {'ok'}
for k, v in pairs(t) do flat[#flat + 1] = k; flat[#flat + 1] = v end
return flat
"""

# KEYS: per entry, its hash, its user's unsynced set and data token. ARGV: sink flag ('pg' |
# 'zoho'), token TTL, then per entry its version, id and its user's new data token. Marks that
# a sink has each entry's current version (both sinks → synced); each user with a marked entry
# has the token set once.
_MARK = _PRELUDE + """
local flag, ttl = ARGV[1], ARGV[2]
local other = flag == 'pg' and 'zoho' or 'pg'
local tokens = {}
for i = 1, #KEYS / 3 do
  local entry, unsynced = KEYS[3 * i - 2], KEYS[3 * i - 1]
  local id = ARGV[3 * i + 1]
  local v = redis.call('HGET', entry, 'version')
  if not v then
    redis.call('SREM', unsynced, id)
  elseif v == ARGV[3 * i] then
    redis.call('HSET', entry, flag, '1')
    tokens[KEYS[3 * i]] = ARGV[3 * i + 2]
    if redis.call('HGET', entry, other) == '1' then
      redis.call('HSET', entry, 'synced', '1')
      redis.call('SREM', unsynced, id)
    end
  end
end
for token_key, token in pairs(tokens) do bump(token_key, token, ttl) end
"""


# One round trip for a date range. Entry hashes are read by names derived from the index
# (entry:{id}), which a single Redis (or one shard) allows; the entries come back as one JSON
# array, so the client parses one reply instead of ~30 per entry.
# KEYS: by-date, data token. ARGV: first day, last day, cap, hot window's first day, proof nonce
# ('' = none), index TTL, a fresh data token.
# Returns {complete (1/0), JSON array of the entries in (day, id) order, the data token they
# show}.
# A hash missing for a day in the hot window (it cannot have expired there, so it was lost)
# withdraws the completeness marker; missing ids are removed from the index. When the index is
# not complete and a nonce is given, the nonce is placed (creating the index if need be) to
# start a proof (_PROVE). Removing ids or the marker sets a new data token; a missing token is
# set (so a replica can hold this answer).
_LIST = _PRELUDE + """
local complete = redis.call('ZSCORE', KEYS[1], '""" + INDEX_COMPLETE + """') and 1 or 0
local token = redis.call('GET', KEYS[2])
local was_complete = complete
local found = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES', 'LIMIT', 0,
  ARGV[3])
local hot_start = tonumber(ARGV[4])
local rows = {}
local gone = {}
for i = 1, #found, 2 do
  local flat = redis.call('HGETALL', 'entry:' .. found[i])
  if #flat == 0 then
    gone[#gone + 1] = found[i]
    if tonumber(found[i + 1]) >= hot_start then complete = 0 end
  else
    rows[#rows + 1] = as_table(flat)
  end
end
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)) end
if #gone > 0 or was_complete ~= complete or not token then
  token = ARGV[7]
  bump(KEYS[2], token, ARGV[6])
end
if complete == 0 then
  if was_complete == 1 then redis.call('ZREM', KEYS[1], '""" + INDEX_COMPLETE + """') end
  if ARGV[5] ~= '' then
    local fresh = redis.call('EXISTS', KEYS[1]) == 0
    redis.call('ZADD', KEYS[1], -1, '""" + PROVING_PREFIX + """' .. ARGV[5])
    if fresh then redis.call('EXPIRE', KEYS[1], ARGV[6]) end
  end
end
if #rows == 0 then return {complete, '[]', token} end
return {complete, cjson.encode(rows), token}
"""

# KEYS: by-date, data token. ARGV: nonce, data token, index TTL, then the ids PostgreSQL holds live
# in the hot window, read after
# _LIST placed the nonce. Marks the index complete if the nonce is still there (so the index
# was neither lost nor recreated since: every entry not yet in PostgreSQL was written to it) and
# every such id is in the index with its hash (or its hash holds a delete not drained yet).
# Returns 1 when marked.
_PROVE = _PRELUDE + """
if redis.call('ZREM', KEYS[1], '""" + PROVING_PREFIX + """' .. ARGV[1]) == 0 then return 0 end
for i = 4, #ARGV do
  local key = 'entry:' .. ARGV[i]
  if redis.call('EXISTS', key) == 0 then return 0 end
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) and redis.call('HGET', key, 'deleted') ~= '1'
  then return 0 end
end
redis.call('ZADD', KEYS[1], 0, '""" + INDEX_COMPLETE + """')
bump(KEYS[2], ARGV[2], ARGV[3])
return 1
"""


# KEYS: by-date indexes. ARGV: nonce, index TTL. Places the nonce in each index not proven
# complete (creating it if need be); returns 1/0 per index: a proof was started.
_BEGIN_PROOFS = """
local started = {}
for i = 1, #KEYS do
  if redis.call('ZSCORE', KEYS[i], '""" + INDEX_COMPLETE + """') then
    started[i] = 0
  else
    local fresh = redis.call('EXISTS', KEYS[i]) == 0
    redis.call('ZADD', KEYS[i], -1, '""" + PROVING_PREFIX + """' .. ARGV[1])
    if fresh then redis.call('EXPIRE', KEYS[i], ARGV[2]) end
    started[i] = 1
  end
end
return started
"""

# KEYS: entry hashes. ARGV: the version PostgreSQL holds of each. Returns a JSON array of the
# hashes holding a newer version (changes not drained yet), in one round trip.
_NEWER = _PRELUDE + """
local rows = {}
for i = 1, #KEYS do
  local version = redis.call('HGET', KEYS[i], 'version')
  if version and tonumber(version) > tonumber(ARGV[i]) then
    rows[#rows + 1] = as_table(redis.call('HGETALL', KEYS[i]))
  end
end
if #rows == 0 then return '[]' end
return cjson.encode(rows)
"""


CREATE = LuaScript(_CREATE)
CHANGE = LuaScript(_CHANGE)
LIST = LuaScript(_LIST)
PROVE = LuaScript(_PROVE)
BEGIN_PROOFS = LuaScript(_BEGIN_PROOFS)
NEWER = LuaScript(_NEWER)
MARK = LuaScript(_MARK)
MARK_CHUNK = 500  # entries per MARK: Redis runs one in a few milliseconds


@dataclass(frozen=True)
class HotEntry:
    entry: Entry
    synced: bool

    @classmethod
    def from_hash(cls, data: dict[str, Any]) -> HotEntry:
        return cls(Entry.from_mapping(data), data.get("synced") == "1")


@dataclass(frozen=True)
class HotRange:
    """What Redis holds for a date range; ``complete``: the index is proven to hold every live
    entry dated in the hot window (so that part needs no PostgreSQL)."""

    entries: list[HotEntry]
    complete: bool


@dataclass(frozen=True)
class HotRows:
    """A date range as the list script returned it: entry hashes as dicts of strings (in
    (date, id) order), whether the index is proven complete, and the data token they show."""

    rows: list[dict[str, str]]
    complete: bool
    token: str

    def entries(self) -> HotRange:
        return HotRange([HotEntry(Entry.from_mapping(row), row.get("synced") == "1")
                         for row in self.rows], self.complete)


@dataclass(frozen=True)
class WriteResult:
    """What a write script said: ``ok``, ``duplicate``, ``cold``, ``noaccess``, ``missing``,
    ``notfound`` or ``conflict``; with the entry (ok), the existing id (duplicate) or the
    current version (conflict)."""

    outcome: str
    hot: HotEntry | None = None
    existing_id: str = ""
    current_version: int = 0


def hot_window_start(today: date, ttl_seconds: int, max_future_days: int) -> date:
    """The first day whose entries cannot have left Redis by TTL: an entry dated D was written
    no earlier than day D − max_future_days and lives the TTL from its last write, so every
    entry dated today + 1 + max_future_days − TTL days or later is still there (31-day TTL,
    dates at most a day ahead: the last 30 days, today − 29 … today)."""
    return today + timedelta(days=1 + max_future_days - ttl_seconds // 86400)


def _pairs(flat: list[Any]) -> dict[str, Any]:
    return dict(zip(flat[0::2], flat[1::2], strict=True))


class HotStore:
    """The hot copy. Its scripts and the data token's GET go through ``runner`` (the service
    gives its :class:`~shared.pipelined_redis.PipelinedRedis`; by default, ``redis``)."""

    def __init__(
        self, redis: aioredis.Redis, ttl_seconds: int, max_future_days: int = 1,
        runner: RedisRunner | None = None,
    ) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.max_future_days = max_future_days
        self.runner = runner or RedisPyRunner(redis)

    def hot_window_start(self, today: date) -> date:
        return hot_window_start(today, self.ttl_seconds, self.max_future_days)

    async def create(self, entry: Entry, request_id: str = "") -> WriteResult:
        email = entry.email
        result = await self.runner.run(
            CREATE,
            keys=[entry_key(entry.id), by_date_key(email), OUTBOX,
                  idempotency_key(email, request_id), projects_key(email), unsynced_key(email),
                  NUDGES, data_token_key(email)],
            args=[entry.id, email, entry.project_id, entry.date, entry.minutes,
                  entry.description, "1" if entry.billable else "0", entry.day.toordinal(),
                  entry.create_time, self.ttl_seconds, "1" if request_id else "0",
                  IDEMPOTENCY_TTL, unique_token()],
        )
        if result[0] == "ok":
            return WriteResult("ok", HotEntry(entry, False))
        if result[0] == "duplicate":
            return WriteResult("duplicate", existing_id=result[1])
        return WriteResult(result[0])

    async def change(
        self, entry_id: str, email: str, expected_version: int, now: str, *,
        delete: bool = False, changes: dict[str, str] | None = None, seed: Entry | None = None,
    ) -> WriteResult:
        changes = changes or {}
        score = str(date.fromisoformat(changes["date"]).toordinal()) if "date" in changes else ""
        flat = [item for pair in changes.items() for item in pair]
        result = await self.runner.run(
            CHANGE,
            keys=[entry_key(entry_id), by_date_key(email), OUTBOX, projects_key(email),
                  unsynced_key(email), NUDGES, data_token_key(email)],
            args=[email, str(expected_version), now, self.ttl_seconds, "1" if delete else "0",
                  seed.to_json() if seed else "", score, unique_token(), *flat],
        )
        if result[0] == "ok":
            return WriteResult("ok", HotEntry.from_hash(_pairs(result[1:])))
        if result[0] == "conflict":
            return WriteResult("conflict", current_version=int(result[1]))
        return WriteResult(result[0])

    async def get(self, entry_id: str) -> HotEntry | None:
        data = await self.redis.hgetall(entry_key(entry_id))
        return HotEntry.from_hash(data) if data else None

    async def list_range(
        self, email: str, first: date, last: date, hot_start: date, *, proof_nonce: str = "",
        cap: int = 5000,
    ) -> HotRange:
        """The user's entries dated first..last, in (date, id) order, in one round trip. When
        the index is not proven complete, ``proof_nonce`` (if given) starts a proof
        (:meth:`prove`)."""
        rows = await self.list_rows(email, first, last, hot_start, proof_nonce=proof_nonce,
                                    cap=cap)
        return rows.entries()

    async def list_rows(
        self, email: str, first: date, last: date, hot_start: date, *, proof_nonce: str = "",
        cap: int = 5000,
    ) -> HotRows:
        """Like :meth:`list_range`, as the raw hash rows with the data token they show."""
        reply = await self.runner.run(
            LIST,
            keys=[by_date_key(email), data_token_key(email)],
            args=[first.toordinal(), last.toordinal(), cap, hot_start.toordinal(), proof_nonce,
                  self.ttl_seconds, unique_token()],
        )
        return HotRows(json.loads(reply[1]), bool(reply[0]), reply[2])

    async def data_token(self, email: str) -> str | None:
        """The user's data token now (one GET); None if the user has none."""
        token: str | None = await self.runner.execute("GET", data_token_key(email))
        return token

    async def begin_proofs(self, emails: list[str], nonce: str) -> list[str]:
        """The users (of ``emails``) whose index is not proven complete; ``nonce`` is placed in
        each of them, to be passed to :meth:`prove`."""
        if not emails:
            return []
        started = await self.runner.run(
            BEGIN_PROOFS, keys=[by_date_key(email) for email in emails],
            args=[nonce, self.ttl_seconds])
        return [email for email, flag in zip(emails, started, strict=True) if flag]

    async def prove(self, email: str, nonce: str, live_ids: list[str]) -> bool:
        """Marks the user's index complete for the hot window, given ``live_ids``: the ids
        PostgreSQL holds live in that window, read after :meth:`list_range` or
        :meth:`begin_proofs` placed ``nonce``."""
        return bool(await self.runner.run(
            PROVE, keys=[by_date_key(email), data_token_key(email)],
            args=[nonce, unique_token(), self.ttl_seconds, *live_ids]))

    async def newer_than(self, stored: list[Entry]) -> dict[str, HotEntry]:
        """The entries of ``stored`` that Redis holds in a newer version (not drained yet)."""
        if not stored:
            return {}
        payload = await self.runner.run(
            NEWER, keys=[entry_key(entry.id) for entry in stored],
            args=[entry.version for entry in stored])
        return {row["id"]: HotEntry(Entry.from_mapping(row), row.get("synced") == "1")
                for row in json.loads(payload)}

    async def mark_synced(self, sink_flag: str, entries: list[Entry]) -> None:
        """Tells each entry's hash that ``sink_flag`` ('pg' or 'zoho') has its version (an
        entry changed since keeps its flags), in one script per :data:`MARK_CHUNK` entries;
        each user's data token changes once per script (to a token of its own: one reused by a
        later script could bring back a state a replica holds an answer of)."""
        for first in range(0, len(entries), MARK_CHUNK):
            chunk = entries[first:first + MARK_CHUNK]
            tokens = {email: unique_token() for email in {entry.email for entry in chunk}}
            keys = [key for entry in chunk for key in (
                entry_key(entry.id), unsynced_key(entry.email), data_token_key(entry.email))]
            args: list[str | int] = [sink_flag, self.ttl_seconds]
            for entry in chunk:
                args += (str(entry.version), entry.id, tokens[entry.email])
            await self.runner.run(MARK, keys, args)

