"""The write path and reads: Redis first, drained to PostgreSQL and Zoho; versions; paging;
idempotency; validation; who may see what."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest
from syncsuite.timeentries.v1 import timeentries_service_pb2 as pb

from services.timeentries.hot_store import OUTBOX
from services.timeentries.sandbox import sandbox_email
from services.timeentries.store import EntryStore
from shared.auth import issue_user_token
from shared.server import RunningService
from tests.conftest import JWT_SECRET
from tests.timeentries.conftest import Caller, Zoho, backlog_drained
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

ALICE = sandbox_email(1)
BOB = sandbox_email(2)


def day(offset: int = 0) -> str:
    return (datetime.now(UTC).date() - timedelta(days=offset)).isoformat()


def project_of(zoho: Zoho, email: str) -> str:
    return sorted(zoho.state.projects_of(email))[0]


async def test_create_list_and_drain_to_postgres_and_zoho(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    alice = caller(ALICE)
    project = project_of(zoho, ALICE)
    created = await alice.create(project, day(1), 90, "design review", billable=False)
    assert created.version == 1 and created.sync_state == pb.SYNC_STATE_PENDING
    listed = await alice.list()
    assert list(listed.entries) == [created]  # the answer to the write shows what was stored
    assert created.create_time == created.update_time and created.create_time.seconds > 0
    await wait_for(lambda: backlog_drained(service))
    stored = await EntryStore(service.runtime.db).get(created.entry_id)
    assert stored is not None and stored.minutes == 90 and stored.version == 1
    logs = zoho.state.logs_for(created.entry_id)
    assert len(logs) == 1 and logs[0]["hours"] == "01:30"
    assert logs[0]["bill_status"] == "Non Billable"
    assert logs[0]["owner"] == zoho.state.user_id(ALICE)
    synced = await wait_for(lambda: _synced(alice))
    assert synced.sync_state == pb.SYNC_STATE_SYNCED


async def _synced(alice: Caller) -> pb.TimeEntry | None:
    entries = (await alice.list()).entries
    return entries[0] if entries and entries[0].sync_state == pb.SYNC_STATE_SYNCED else None


async def test_update_and_delete_follow_versions_everywhere(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    alice = caller(ALICE)
    project = project_of(zoho, ALICE)
    entry = await alice.create(project, day(2), 30)
    updated = (await alice.stub.UpdateTimeEntry(pb.UpdateTimeEntryRequest(
        entry_id=entry.entry_id, version=1, duration_minutes=45, date=day(3)),
        metadata=alice.metadata)).entry
    assert updated.version == 2 and updated.duration_minutes == 45 and updated.date == day(3)
    assert updated.description == "work"
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await alice.stub.UpdateTimeEntry(pb.UpdateTimeEntryRequest(
            entry_id=entry.entry_id, version=1, duration_minutes=10), metadata=alice.metadata)
    assert stale.value.code() == grpc.StatusCode.ABORTED
    await wait_for(lambda: backlog_drained(service))
    stored = await EntryStore(service.runtime.db).get(entry.entry_id)
    assert stored is not None and (stored.version, stored.minutes) == (2, 45)
    assert [log["hours"] for log in zoho.state.logs_for(entry.entry_id)] == ["00:45"]

    deleted = await alice.stub.DeleteTimeEntry(pb.DeleteTimeEntryRequest(
        entry_id=entry.entry_id, version=2), metadata=alice.metadata)
    assert deleted.version == 3
    assert (await alice.list(day(10), day(0))).entries == []
    await wait_for(lambda: backlog_drained(service))
    stored = await EntryStore(service.runtime.db).get(entry.entry_id)
    assert stored is not None and stored.deleted and stored.version == 3
    assert zoho.state.logs_for(entry.entry_id) == []


async def test_an_older_version_never_overwrites_a_newer_one(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    """The PostgreSQL sink gets version 2, then a late copy of version 1: it stays at 2."""
    alice = caller(ALICE)
    entry = await alice.create(project_of(zoho, ALICE), day(1), 30)
    await alice.stub.UpdateTimeEntry(pb.UpdateTimeEntryRequest(
        entry_id=entry.entry_id, version=1, duration_minutes=50), metadata=alice.metadata)
    await wait_for(lambda: backlog_drained(service))
    store = EntryStore(service.runtime.db)
    newest = await store.get(entry.entry_id)
    assert newest is not None and newest.version == 2
    await store.upsert([newest.with_changes(version=1, minutes=30)])
    again = await store.get(entry.entry_id)
    assert again is not None and (again.version, again.minutes) == (2, 50)


async def test_the_same_request_id_returns_the_same_entry(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    alice = caller(ALICE)
    project = project_of(zoho, ALICE)
    first = await alice.create(project, day(1), 30, request_id="retry-me")
    second = await alice.create(project, day(1), 30, request_id="retry-me")
    assert first.entry_id == second.entry_id
    assert len((await alice.list()).entries) == 1
    other = await caller(BOB).create(project_of(zoho, BOB), day(1), 30, request_id="retry-me")
    assert other.entry_id != first.entry_id  # keys are per user


async def test_paging_and_old_entries_come_from_postgres_merged_without_duplicates(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    alice = caller(ALICE)
    project = project_of(zoho, ALICE)
    recent = [await alice.create(project, day(offset), 10 + offset) for offset in range(0, 20)]
    old = [await alice.create(project, day(offset), 10) for offset in (40, 60, 90)]
    await wait_for(lambda: backlog_drained(service))
    entries = await alice.list_all(day(100), day(0))
    ids = [e.entry_id for e in entries]
    assert len(ids) == len(set(ids)) == 23
    assert set(ids) == {e.entry_id for e in recent + old}
    assert [e.date for e in entries] == sorted(e.date for e in entries)
    # a page size smaller than the set, across the Redis/PostgreSQL boundary
    page = await alice.list(day(100), day(0), page_size=2)
    assert [e.entry_id for e in page.entries] == ids[:2] and page.next_page_token


async def test_user_a_cannot_see_change_or_delete_user_b_entries(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    alice, bob = caller(ALICE), caller(BOB)
    entry = await alice.create(project_of(zoho, ALICE), day(1), 30)
    assert (await bob.list()).entries == []
    for call in (
        bob.stub.UpdateTimeEntry(pb.UpdateTimeEntryRequest(
            entry_id=entry.entry_id, version=1, duration_minutes=5), metadata=bob.metadata),
        bob.stub.DeleteTimeEntry(pb.DeleteTimeEntryRequest(
            entry_id=entry.entry_id, version=1), metadata=bob.metadata),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    # Bob cannot log time on Alice's projects either
    only_alice = sorted(zoho.state.projects_of(ALICE) - zoho.state.projects_of(BOB))[0]
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await bob.create(only_alice, day(1))
    assert denied.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "project_id" in (denied.value.details() or "")
    assert [e.entry_id for e in (await alice.list()).entries] == [entry.entry_id]


@pytest.mark.parametrize("token_kind", ["expired", "forged", "none"])
async def test_expired_or_forged_tokens_are_refused(
    service: RunningService, channel: grpc.aio.Channel, token_kind: str
) -> None:
    tokens = {
        "expired": issue_user_token(JWT_SECRET, ALICE, ttl_seconds=-120),
        "forged": jwt.encode({"sub": ALICE, "email": ALICE, "aud": "authenticated",
                              "exp": 4102444800}, "not-the-secret-" * 3, algorithm="HS256"),
        "none": "",
    }
    caller = Caller(channel, ALICE, token=tokens[token_kind] or "x")
    if token_kind == "none":
        caller.metadata = ()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await caller.list()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(("field", "changes"), [
    ("duration_minutes", {"duration_minutes": 0}),
    ("duration_minutes", {"duration_minutes": -5}),
    ("duration_minutes", {"duration_minutes": 24 * 60 + 1}),
    ("project_id", {"project_id": "999"}),
    ("project_id", {"project_id": ""}),
    ("date", {"date": "2024-13-45"}),
    ("date", {"date": "yesterday"}),
    ("date", {"date": "1999-01-01"}),
    ("description", {"description": "x" * 2001}),
    ("request_id", {"request_id": "r" * 200}),
])
async def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller], field: str,
    changes: dict[str, object],
) -> None:
    alice = caller(ALICE)
    request = {"project_id": project_of(zoho, ALICE), "date": day(1), "duration_minutes": 60,
               "description": "ok", **changes}
    redis = service.runtime.redis
    before = await redis.xlen(OUTBOX)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await alice.stub.CreateTimeEntry(pb.CreateTimeEntryRequest(**request),  # type: ignore[arg-type]
                                         metadata=alice.metadata)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith(f"{field}:")
    assert await redis.xlen(OUTBOX) == before
    assert [key async for key in redis.scan_iter(match="entry:*")] == []


async def test_bad_update_and_list_arguments(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    alice = caller(ALICE)
    entry = await alice.create(project_of(zoho, ALICE), day(1), 30)
    cases = [
        (alice.stub.UpdateTimeEntry(pb.UpdateTimeEntryRequest(
            entry_id=entry.entry_id, version=1, duration_minutes=0), metadata=alice.metadata),
         "duration_minutes"),
        (alice.stub.UpdateTimeEntry(pb.UpdateTimeEntryRequest(
            entry_id="not-a-uuid", version=1, duration_minutes=5), metadata=alice.metadata),
         "entry_id"),
        (alice.stub.DeleteTimeEntry(pb.DeleteTimeEntryRequest(
            entry_id=entry.entry_id), metadata=alice.metadata), "version"),
        (alice.list("2024-02-30"), "from_date"),
        (alice.list(day(1), day(5)), "from_date"),
        (alice.list(page_size=-1), "page_size"),
        (alice.list(page_token="garbage!"), "page_token"),
    ]
    for call, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert (refused.value.details() or "").startswith(f"{field}:")
    latest = (await alice.list()).entries[0]
    assert (latest.version, latest.duration_minutes) == (1, 30)
