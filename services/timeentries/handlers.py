"""TimeEntriesService: the RPC handlers (always scoped to the calling user's email)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
from redis.exceptions import RedisError
from syncsuite.timeentries.v1 import timeentries_service_pb2 as pb
from syncsuite.timeentries.v1 import timeentries_service_pb2_grpc as pb_grpc

from services.timeentries.hot_store import HotEntry, HotRows, HotStore, WriteResult, unique_token
from services.timeentries.hot_window import prove_hot_window
from services.timeentries.messages import entry_message, hot_page, moment_now, set_entry
from services.timeentries.model import (
    Entry,
    Limits,
    new_entry_id,
    parse_date,
    parse_entry_id,
    utc_today,
    validate_fields,
)
from services.timeentries.outbox import Outbox
from services.timeentries.projects import Projects
from services.timeentries.store import EntryStore
from shared.auth import current_user_email
from shared.errors import Conflict, InvalidArgument, NotFound, Unavailable
from shared.metrics import Metrics
from shared.paging import decode_page_token, encode_page_token, page_size
from shared.readcache import UNCHANGED, Unchanged, Versioned, VersionedReadCache
from shared.timestamps import duration, timestamp

__all__ = ["TimeEntriesServicer"]


MAX_RANGE_DAYS = 366
LIST_CACHE_ENTRIES = 1024  # per replica; a month of ~100 entries is ~50 kB of messages
ListKey = tuple[str, date, date, tuple[str, str] | None, int]
NO_ACCESS = "unknown project, or you have no access to it"


@dataclass
class TimeEntriesServicer(pb_grpc.TimeEntriesServiceServicer):
    hot: HotStore
    entries: EntryStore
    projects: Projects
    outbox: Outbox
    limits: Limits
    metrics: Metrics
    list_cache_entries: int = LIST_CACHE_ENTRIES

    def __post_init__(self) -> None:
        # ListTimeEntries answers of hot ranges by (email, first, last, cursor, page size), each
        # stamped with the user's data token (hot_store.py) and tagged with the email: answered
        # from memory while the Redis invalidation feed (server.py) is up and has not named the
        # user's token since, else reused while a GET says the token is unchanged. Held
        # serialized, so a reused answer costs no protobuf encoding.
        self.list_cache: VersionedReadCache[ListKey, bytes] = VersionedReadCache(
            max_entries=self.list_cache_entries,
            on_event=partial(self.metrics.cache_hit, "timeentries_list"))

    # -- writes -----------------------------------------------------------------------------

    async def CreateTimeEntry(self, request: pb.CreateTimeEntryRequest, context: Any) -> Any:
        email = current_user_email()
        request_id = request.request_id.strip()
        validate_fields(
            self.limits, project_id=request.project_id, day=request.date,
            minutes=request.duration_minutes, description=request.description,
            request_id=request_id,
        )
        moment = moment_now()
        entry = Entry(
            id=new_entry_id(), email=email, project_id=request.project_id.strip(),
            date=request.date, minutes=request.duration_minutes,
            description=request.description, billable=request.billable, version=1,
            deleted=False, create_time=moment.iso, update_time=moment.iso,
        )
        result = await self._write(email, lambda: self.hot.create(entry, request_id))
        if result.outcome == "duplicate":
            return pb.CreateTimeEntryResponse(entry=await self._existing(email, result.existing_id))
        assert result.hot is not None
        reply = pb.CreateTimeEntryResponse()
        set_entry(reply.entry, result.hot, moment)
        return reply

    async def UpdateTimeEntry(self, request: pb.UpdateTimeEntryRequest, context: Any) -> Any:
        email = current_user_email()
        entry_id = parse_entry_id(request.entry_id)
        version = self._version(request.version)
        changes: dict[str, str] = {}
        given = {name for name in ("project_id", "date", "duration_minutes", "description",
                                   "billable") if request.HasField(name)}
        if not given:
            raise InvalidArgument("update", "set at least one field to change")
        validate_fields(
            self.limits,
            project_id=request.project_id if "project_id" in given else None,
            day=request.date if "date" in given else None,
            minutes=request.duration_minutes if "duration_minutes" in given else None,
            description=request.description if "description" in given else None,
        )
        if "project_id" in given:
            changes["project_id"] = request.project_id.strip()
        if "date" in given:
            changes["date"] = request.date
        if "duration_minutes" in given:
            changes["minutes"] = str(request.duration_minutes)
        if "description" in given:
            changes["description"] = request.description
        if "billable" in given:
            changes["billable"] = "1" if request.billable else "0"
        hot = await self._change(email, entry_id, version, changes=changes)
        return pb.UpdateTimeEntryResponse(entry=entry_message(hot))

    async def DeleteTimeEntry(self, request: pb.DeleteTimeEntryRequest, context: Any) -> Any:
        email = current_user_email()
        entry_id = parse_entry_id(request.entry_id)
        hot = await self._change(email, entry_id, self._version(request.version), delete=True)
        return pb.DeleteTimeEntryResponse(entry_id=entry_id, version=hot.entry.version)

    @staticmethod
    def _version(version: int) -> int:
        if version <= 0:
            raise InvalidArgument("version", "is required: the entry's current version")
        return version

    async def _write(self, email: str, write: Any) -> WriteResult:
        """Runs a write script; a cold projects set is loaded from PostgreSQL once. Whatever
        came of it (a write whose answer was lost may have happened), this replica's held lists
        of the user are checked on their next read: Redis's invalidation comes on another
        connection, maybe after the caller's next ListTimeEntries."""
        try:
            result: WriteResult = await write()
            if result.outcome == "cold":
                await self.projects.refill(email)
                result = await write()
        except RedisError:
            raise Unavailable("the entry store (Redis) is unavailable; retry") from None
        except (OSError, asyncpg.PostgresError):
            raise Unavailable("the project store is unavailable; retry") from None
        finally:
            self.list_cache.invalidate((email,))  # the caller reads its own write here
        if result.outcome in ("cold", "noaccess"):
            raise InvalidArgument("project_id", NO_ACCESS)
        return result

    async def _change(
        self, email: str, entry_id: str, version: int, *, delete: bool = False,
        changes: dict[str, str] | None = None,
    ) -> HotEntry:
        now = moment_now().iso

        def attempt(seed: Entry | None = None) -> Any:
            return lambda: self.hot.change(entry_id, email, version, now, delete=delete,
                                           changes=changes, seed=seed)

        result = await self._write(email, attempt())
        if result.outcome == "missing":  # older than the hot window: PostgreSQL has it
            try:
                seed = await self.entries.get(entry_id)
            except (OSError, asyncpg.PostgresError):
                raise Unavailable("the entry store is unavailable; retry") from None
            if seed is None or seed.email != email:
                raise NotFound(f"time entry {entry_id} not found")
            result = await self._write(email, attempt(seed))
        if result.outcome in ("notfound", "missing"):
            raise NotFound(f"time entry {entry_id} not found")
        if result.outcome == "conflict":
            raise Conflict(f"time entry {entry_id} is at version {result.current_version}, "
                           f"not {version}: read it again")
        assert result.hot is not None
        return result.hot

    async def _existing(self, email: str, entry_id: str) -> pb.TimeEntry:
        hot = await self.hot.get(entry_id)
        if hot is None:
            stored = await self.entries.get(entry_id)
            hot = HotEntry(stored, True) if stored else None
        if hot is None or hot.entry.email != email:
            raise NotFound(f"time entry {entry_id} not found")
        return entry_message(hot)

    # -- reads ------------------------------------------------------------------------------

    async def ListTimeEntries(self, request: pb.ListTimeEntriesRequest, context: Any) -> bytes:
        """The serialized ListTimeEntriesResponse (shared/wire.py: handlers may answer bytes)."""
        email = current_user_email()
        today = utc_today()
        last = parse_date("to_date", request.to_date) if request.to_date else today
        first = (parse_date("from_date", request.from_date) if request.from_date
                 else last - timedelta(days=29))
        if first > last:
            raise InvalidArgument("from_date", "must not be after to_date")
        if (last - first).days >= MAX_RANGE_DAYS:
            raise InvalidArgument("to_date", f"the range must be at most {MAX_RANGE_DAYS} days")
        size = page_size(request.page_size, default=100, maximum=1000)
        after: tuple[date, str] | None = None
        if request.page_token:
            decoded = decode_page_token(request.page_token, required=("d", "i"))
            after = (parse_date("page_token", str(decoded["d"])), str(decoded["i"]))
        hot_start = self.hot.hot_window_start(today)
        cursor = (after[0].isoformat(), after[1]) if after is not None else None
        try:
            if first < hot_start:  # PostgreSQL has a part: never cached
                return (await self._list_merged(email, first, last, cursor, size, hot_start,
                                                None)).SerializeToString()

            async def load(held: Versioned[bytes] | None) -> Versioned[bytes] | Unchanged:
                if held is not None and held.version and (
                        held.version == await self.hot.data_token(email)):
                    return UNCHANGED  # confirmed by one GET (hot_store.py, "Data version")
                nonce = unique_token()
                hot = await self.hot.list_rows(email, first, last, hot_start, proof_nonce=nonce)
                if not hot.complete:  # answered with PostgreSQL: no version, not held
                    return Versioned(None, (await self._list_merged(
                        email, first, last, cursor, size, hot_start, (hot, nonce)
                    )).SerializeToString())
                return Versioned(hot.token,
                                 hot_page(hot.rows, email, cursor, size).SerializeToString(),
                                 (email,))

            return await self.list_cache.get((email, first, last, cursor, size), load)
        except RedisError:
            raise Unavailable("the entry store (Redis) is unavailable; retry") from None
        except (OSError, asyncpg.PostgresError):
            raise Unavailable("the entry store (PostgreSQL) is unavailable; retry") from None

    async def _list_merged(
        self, email: str, first: date, last: date, cursor: tuple[str, str] | None, size: int,
        hot_start: date, hot_read: tuple[HotRows, str] | None,
    ) -> pb.ListTimeEntriesResponse:
        found = await self._range(email, first, last, cursor, size + 1, hot_start, hot_read)
        page = found[:size]
        token = ""
        if len(found) > size:
            tail = page[-1].entry
            token = encode_page_token({"d": tail.date, "i": tail.id})
        return pb.ListTimeEntriesResponse(entries=[entry_message(h) for h in page],
                                          next_page_token=token)

    async def _range(
        self, email: str, first: date, last: date, cursor: tuple[str, str] | None, limit: int,
        hot_start: date, hot_read: tuple[HotRows, str] | None,
    ) -> list[HotEntry]:
        """Redis for the whole range (it has the newest version of whatever it holds; read here
        unless ``hot_read`` gives that read and its proof nonce); when its index is proven
        complete for the hot window, PostgreSQL only for the days before it, otherwise
        PostgreSQL for the whole range (then the index is proven for next time). Merged by id,
        the newer version winning, in (date, id) order."""
        if hot_read is None:
            nonce = unique_token()
            hot = await self.hot.list_range(email, first, last, hot_start, proof_nonce=nonce)
        else:
            nonce = hot_read[1]
            hot = hot_read[0].entries()
        after = (date.fromisoformat(cursor[0]), cursor[1]) if cursor is not None else None
        merged: dict[str, HotEntry] = {h.entry.id: h for h in hot.entries}
        cold_last = min(last, hot_start - timedelta(days=1)) if hot.complete else last
        if first <= cold_last:
            stored = await self.entries.list_range(email, first, cold_last, after, limit)
            newer = await self.hot.newer_than([e for e in stored if e.id not in merged])
            for entry in stored:
                if entry.id in merged:
                    continue
                current = newer.get(entry.id)
                if current is None:
                    merged[entry.id] = HotEntry(entry, True)
                elif not current.entry.deleted and first <= current.entry.day <= last:
                    merged[entry.id] = current
        if not hot.complete:
            await prove_hot_window(self.hot, self.entries, email, nonce, hot_start)
        ordered = sorted(merged.values(), key=lambda h: (h.entry.date, h.entry.id))
        if cursor is not None:
            ordered = [h for h in ordered if (h.entry.date, h.entry.id) > cursor]
        return [h for h in ordered if h.entry.email == email][:limit]

    async def ListProjects(self, request: pb.ListProjectsRequest, context: Any) -> Any:
        email = current_user_email()
        try:
            records = await self.projects.for_user(email)
        except RedisError:
            raise Unavailable("the project cache (Redis) is unavailable; retry") from None
        except (OSError, asyncpg.PostgresError):
            raise Unavailable("the project store is unavailable; retry") from None
        return pb.ListProjectsResponse(projects=[
            pb.Project(project_id=p.project_id, name=p.name, status=p.status) for p in records])

    # -- admin ------------------------------------------------------------------------------

    async def GetSyncBacklog(self, request: pb.GetSyncBacklogRequest, context: Any) -> Any:
        targets = []
        for backlog in await self.outbox.backlog():
            self.metrics.backlog.labels(backlog.target).set(backlog.pending)
            targets.append(pb.SinkBacklog(
                target=backlog.target, pending_count=backlog.pending,
                oldest_pending_age=duration(backlog.oldest_age_seconds),
                failed_count=backlog.failed,
                failed=[pb.DeadLetter(
                    entry_id=letter["entry"]["id"], version=letter["entry"]["version"],
                    reason=letter["reason"],
                    fail_time=timestamp(datetime.fromtimestamp(letter["time"], UTC)),
                ) for letter in backlog.dead_letters],
            ))
        return pb.GetSyncBacklogResponse(targets=targets)

    async def RetryDeadLetters(self, request: pb.RetryDeadLettersRequest, context: Any) -> Any:
        if request.target and request.target not in self.outbox.groups:
            raise InvalidArgument("target", f"must be one of {', '.join(self.outbox.groups)}")
        moved = 0
        for group in [request.target] if request.target else self.outbox.groups:
            moved += await self.outbox.retry_dead_letters(group)
        return pb.RetryDeadLettersResponse(requeued_count=moved)
