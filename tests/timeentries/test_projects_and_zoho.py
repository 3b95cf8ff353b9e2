"""Projects read-aside and sync; the Zoho client against the sandbox (OAuth, paging, errors)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import grpc
import pytest
import redis.asyncio as aioredis

from services.timeentries.hot_store import projects_key
from services.timeentries.model import Entry
from services.timeentries.projects import PROJECTS_DATA, USER_MAP
from services.timeentries.sandbox import SandboxConfig, ZohoSandbox, create_app, sandbox_email
from services.timeentries.settings import TimeEntriesSettings
from services.timeentries.sinks import ZohoSink, _lock_key
from services.timeentries.zoho import ZohoClient
from shared.config import load
from shared.sandbox import SandboxServer
from shared.server import RunningService
from shared.upstream import UpstreamAuthError, UpstreamUnavailable
from tests.timeentries.conftest import Caller, Zoho, fast_env, sync_projects
from tests.timeentries.test_entries import day
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

ALICE = sandbox_email(1)


async def test_list_projects_reads_redis_and_refills_a_cold_cache_from_postgres(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    alice = caller(ALICE)
    expected = zoho.state.projects_of(ALICE)
    assert set(await alice.projects()) == expected
    redis = service.runtime.redis
    assert await redis.hlen(USER_MAP) == len(zoho.state.users)
    await redis.delete(projects_key(ALICE), PROJECTS_DATA)  # cold
    assert set(await alice.projects()) == expected
    assert await redis.sismember(projects_key(ALICE), sorted(expected)[0])


async def test_sync_swaps_sets_atomically_and_revoked_access_disappears(
    service: RunningService, zoho: Zoho, caller: Callable[[str], Caller]
) -> None:
    alice = caller(ALICE)
    before = zoho.state.projects_of(ALICE)
    lost = sorted(before)[0]
    gained = sorted(set(zoho.state.projects) - before)[0]
    zoho.state.revoke(ALICE, lost)
    zoho.state.grant(ALICE, gained)
    seen: list[set[str]] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            seen.append(set(await alice.projects()))

    watcher = asyncio.create_task(watch())
    await sync_projects(service)
    done.set()
    await watcher
    assert all(s in (before, before - {lost} | {gained}) for s in seen)  # never empty/partial
    assert set(await alice.projects()) == before - {lost} | {gained}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await alice.create(lost, day(1))
    assert (refused.value.details() or "").startswith("project_id:")
    await alice.create(gained, day(1))
    for project in sorted(zoho.state.projects_of(ALICE)):
        zoho.state.revoke(ALICE, project)
    await sync_projects(service)
    assert await alice.projects() == []


async def _client(url: str, service_env: dict[str, str]) -> ZohoClient:
    return ZohoClient.from_settings(load(TimeEntriesSettings, fast_env(service_env, url)))


async def test_client_pages_crm_past_2000_records_with_page_token(
    service_env: dict[str, str],
) -> None:
    app = create_app(ZohoSandbox(SandboxConfig(users=520, projects=250, projects_per_user=5)))
    with SandboxServer(app) as server:
        client = await _client(server.url, service_env)
        try:
            access = await client.list_access()
            users = await client.list_users()
            projects = await client.list_projects()
        finally:
            await client.aclose()
    assert len(access) == 2600 and len(set(access)) == 2600
    assert len(users) == 520 and len(projects) == 250
    assert app.state.faults.by_path["/crm/v2/Project_Access"] == 13


async def test_client_refreshes_tokens_and_reports_errors(
    service_env: dict[str, str],
) -> None:
    state = ZohoSandbox(SandboxConfig(token_seconds=1))
    app = create_app(state)
    with SandboxServer(app) as server:
        client = await _client(server.url, service_env)
        try:
            await client.list_projects()
            await client.list_projects()
            assert client.tokens.refreshes == 1  # a 1 s token lasts half its life (< margin)
            await asyncio.sleep(0.6)
            await client.list_projects()
            assert client.tokens.refreshes == 2  # renewed before it expired
            state.tokens.clear()  # Zoho forgot every token: one 401, one refresh, success
            client.tokens._renew_at = float("inf")
            await client.list_users()
            app.state.faults.force("status", status=500, count=5, path_prefix="/restapi/")
            with pytest.raises(UpstreamUnavailable):
                await client.list_projects()
            client.tokens._credentials = client.tokens._credentials.__class__(
                "sandbox-client-id", client.tokens._credentials.client_secret,
                client.tokens._credentials.refresh_token.__class__("wrong"), "sandbox-portal")
            client.tokens._token = None
            with pytest.raises(UpstreamAuthError):
                await client.list_projects()
        finally:
            await client.aclose()
    assert app.state.faults.by_path["/crm/v2/users"] >= 2


async def test_the_zoho_sink_pushes_under_a_lock_it_never_takes_from_another_worker(
    zoho: Zoho, service_env: dict[str, str], clean_state: None,
) -> None:
    redis = aioredis.Redis.from_url(service_env["REDIS_URL"], decode_responses=True)
    client = await _client(zoho.url, service_env)
    sink = ZohoSink(redis, client, lock_seconds=30)
    project = sorted(zoho.state.projects_of(ALICE))[0]
    entry = Entry(id=str(uuid.uuid4()), email=ALICE, project_id=project, date=day(1),
                  minutes=30, description="locked", billable=True, version=1, deleted=False,
                  create_time="2026-11-22T10:00:00+00:00", update_time="2026-11-22T10:00:00+00:00")
    lock = _lock_key(entry.id)
    try:
        await redis.set(lock, "another-worker")
        held = await sink.deliver([entry])
        assert (held.done, held.rejected) == ([], [])  # left for later, not refused
        assert zoho.state.logs_for(entry.id) == []

        # our lock expires during the push and another worker takes it: ours to keep, not to drop
        await redis.delete(lock)
        zoho.faults.force("hang", seconds=0.5, path_prefix="/restapi/")
        pushing = asyncio.create_task(sink.deliver([entry]))
        await wait_for(lambda: _is_held(redis, lock), timeout=5)
        await redis.set(lock, "another-worker")
        assert (await asyncio.wait_for(pushing, 10)).done == [entry]
        assert await redis.get(lock) == "another-worker"
        assert len(zoho.state.logs_for(entry.id)) == 1

        await redis.delete(lock)
        assert (await sink.deliver([entry])).done == [entry]  # that version is there already
        assert len(zoho.state.logs_for(entry.id)) == 1
        assert await redis.get(lock) is None  # released
    finally:
        await client.aclose()
        await redis.aclose()


async def _is_held(redis: aioredis.Redis, lock: str) -> bool:
    return await redis.get(lock) is not None
