"""ListTimeEntries reads the hot window from Redis alone only when Redis can prove it holds all
of it; otherwise PostgreSQL answers (and nothing is listed twice)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from services.timeentries.hot_store import (
    INDEX_COMPLETE,
    by_date_key,
    entry_key,
    hot_window_start,
)
from services.timeentries.sandbox import sandbox_email
from shared.server import RunningService
from tests.timeentries.conftest import Caller, Zoho, backlog_drained
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

ALICE = sandbox_email(5)


def today() -> date:
    return datetime.now(UTC).date()


def day(offset: int) -> str:
    return (today() - timedelta(days=offset)).isoformat()


def project_of(zoho: Zoho, email: str) -> str:
    return sorted(zoho.state.projects_of(email))[0]


async def is_complete(service: RunningService, email: str) -> bool:
    return await service.runtime.redis.zscore(by_date_key(email), INDEX_COMPLETE) is not None


def test_the_hot_window_is_what_the_ttl_guarantees() -> None:
    """31-day TTL, dates at most a day ahead: the last 30 days (the default list range)."""
    assert hot_window_start(date(2026, 3, 31), 31 * 86400, 1) == date(2026, 3, 2)
    assert hot_window_start(date(2026, 3, 31), 30 * 86400, 1) == date(2026, 3, 3)
    assert hot_window_start(date(2026, 3, 31), 31 * 86400, 0) == date(2026, 3, 1)


async def test_a_range_across_the_hot_window_boundary_lists_everything_once(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    alice = caller(ALICE)
    project = project_of(zoho, ALICE)
    first_hot = (today() - hot_window_start(today(), 31 * 86400, 1)).days  # days ago: 29
    offsets = [0, 5, first_hot - 1, first_hot, first_hot + 1, first_hot + 2, 45]
    created = [await alice.create(project, day(offset), 10 + i)
               for i, offset in enumerate(offsets)]
    await wait_for(lambda: backlog_drained(service))
    assert await is_complete(service, ALICE)  # the PostgreSQL sink proved the index
    # the entries older than the hot window are also still in Redis (just written): both
    # sides have them, and they are listed once
    for page_size in (100, 2):
        ids: list[str] = []
        token = ""
        while True:
            reply = await alice.list(day(60), day(0), page_size=page_size, page_token=token)
            ids += [e.entry_id for e in reply.entries]
            token = reply.next_page_token
            if not token:
                break
        assert len(ids) == len(set(ids)) == len(created)
        assert set(ids) == {e.entry_id for e in created}
    # once the old ones left Redis (TTL), PostgreSQL still lists them; the index stays proven
    redis = service.runtime.redis
    for entry, offset in zip(created, offsets, strict=True):
        if offset > first_hot:
            await redis.delete(entry_key(entry.entry_id))
    month = await alice.list_all(day(first_hot + 2), day(0))
    assert [e.entry_id for e in month] == [e.entry_id for e in sorted(
        created[:6], key=lambda e: (e.date, e.entry_id))]
    assert await is_complete(service, ALICE)
    # the default range is the hot window exactly
    default = await alice.list_all()
    assert {e.date for e in default} == {day(o) for o in offsets if o <= first_hot}


async def test_a_lost_index_recreated_by_a_write_falls_back_to_postgres(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    """Redis loses the user's index and hashes (restart without its data, flush): a new write
    recreates the index with only itself; PostgreSQL still answers for the rest."""
    alice = caller(ALICE)
    project = project_of(zoho, ALICE)
    before = [await alice.create(project, day(offset), 30) for offset in (1, 3, 10)]
    await wait_for(lambda: backlog_drained(service))
    assert await is_complete(service, ALICE)
    redis = service.runtime.redis
    await redis.delete(by_date_key(ALICE), *[entry_key(e.entry_id) for e in before])
    after = await alice.create(project, day(2), 45)
    expected = {e.entry_id for e in [*before, after]}
    assert {e.entry_id for e in await alice.list_all()} == expected
    await wait_for(lambda: backlog_drained(service))
    # PostgreSQL has entries whose hashes Redis lost: the index cannot be proven
    assert not await is_complete(service, ALICE)
    listed = await alice.list_all()
    assert {e.entry_id for e in listed} == expected and len(listed) == 4


async def test_an_expired_index_is_read_from_postgres_then_proven_again(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    alice = caller(ALICE)
    project = project_of(zoho, ALICE)
    entries = [await alice.create(project, day(offset), 30) for offset in (0, 7)]
    await wait_for(lambda: backlog_drained(service))
    redis = service.runtime.redis
    await redis.delete(by_date_key(ALICE))  # the index alone is gone (evicted)
    assert {e.entry_id for e in await alice.list_all()} == {e.entry_id for e in entries}
    assert not await is_complete(service, ALICE)
    # hashes are there but the ids are not in an index: not provable until written again
    assert {e.entry_id for e in await alice.list_all()} == {e.entry_id for e in entries}


async def test_a_hash_missing_in_the_hot_window_withdraws_the_proof(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    alice = caller(ALICE)
    project = project_of(zoho, ALICE)
    entries = [await alice.create(project, day(offset), 30) for offset in (0, 4, 8)]
    await wait_for(lambda: backlog_drained(service))
    assert await is_complete(service, ALICE)
    await service.runtime.redis.delete(entry_key(entries[1].entry_id))  # evicted
    listed = await alice.list_all()
    assert [e.entry_id for e in listed] == [e.entry_id for e in sorted(
        entries, key=lambda e: (e.date, e.entry_id))]
    assert not await is_complete(service, ALICE)


async def test_a_new_user_index_is_proven_and_undrained_changes_still_win(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    """A user with nothing in PostgreSQL: the first read proves the index (no PostgreSQL
    afterwards); an update not drained yet is listed in its new version, deletes disappear."""
    from syncsuite.timeentries.v1 import timeentries_service_pb2 as pb

    alice = caller(ALICE)
    assert (await alice.list()).entries == []
    assert await is_complete(service, ALICE)  # an empty, proven index
    project = project_of(zoho, ALICE)
    kept = await alice.create(project, day(3), 30)
    gone = await alice.create(project, day(4), 30)
    await wait_for(lambda: backlog_drained(service))
    await alice.stub.UpdateTimeEntry(pb.UpdateTimeEntryRequest(
        entry_id=kept.entry_id, version=1, duration_minutes=50), metadata=alice.metadata)
    await alice.stub.DeleteTimeEntry(pb.DeleteTimeEntryRequest(
        entry_id=gone.entry_id, version=1), metadata=alice.metadata)
    listed = await alice.list_all()
    assert [(e.entry_id, e.version, e.duration_minutes) for e in listed] == [
        (kept.entry_id, 2, 50)]
    assert await is_complete(service, ALICE)
