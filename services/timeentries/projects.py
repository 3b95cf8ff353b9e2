"""Projects: read-aside from Redis, synced nightly from Zoho (scope ``projects``).

    projects:data                 hash: project id → JSON {project_id, name, status}
    user:{email}:projects         set: the project ids a user may use, plus the marker "-"
                                  (so "no projects" is cached too; a missing key means cold)
    projects:users                set: emails that have a projects set (to find revocations)
    zoho:map:user_id_to_email     hash: Zoho user id → email

A sync writes PostgreSQL first (one transaction), then builds every new set under a temporary
name and swaps them in with RENAME inside one MULTI/EXEC: a reader sees the old sets or the new
ones, never a moment without projects; users who lost all access get an empty (marker-only) set.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from services.timeentries.hot_store import PROJECTS_LOADED, projects_key
from services.timeentries.store import ProjectRecord, ProjectStore
from services.timeentries.zoho import ZohoClient
from shared.metrics import Metrics
from shared.sync import SyncJob

__all__ = ["PROJECTS_DATA", "PROJECT_USERS", "USER_MAP", "Projects"]

log = structlog.get_logger("projects")

PROJECTS_DATA = "projects:data"
PROJECT_USERS = "projects:users"
USER_MAP = "zoho:map:user_id_to_email"


@dataclass
class Projects:
    redis: aioredis.Redis
    store: ProjectStore
    metrics: Metrics

    async def for_user(self, email: str) -> list[ProjectRecord]:
        key = projects_key(email)
        ids = await self.redis.smembers(key)
        if not ids:
            self.metrics.cache_hit("projects", "miss")
            return await self.refill(email)
        self.metrics.cache_hit("projects", "hit")
        ids.discard(PROJECTS_LOADED)
        if not ids:
            return []
        ordered = sorted(ids)
        values = await self.redis.hmget(PROJECTS_DATA, ordered)
        if any(value is None for value in values):  # details evicted: PostgreSQL has them
            self.metrics.cache_hit("projects_data", "miss")
            return await self.refill(email)
        records = [ProjectRecord(**json.loads(value)) for value in values if value]
        return sorted(records, key=lambda p: (p.name, p.project_id))

    async def refill(self, email: str) -> list[ProjectRecord]:
        """A cold user: their projects from PostgreSQL, written back to Redis."""
        records = await self.store.for_user(email)
        async with self.redis.pipeline(transaction=True) as pipe:
            if records:
                pipe.hset(PROJECTS_DATA, mapping={
                    p.project_id: json.dumps(p.__dict__) for p in records})
            pipe.sadd(projects_key(email), PROJECTS_LOADED, *[p.project_id for p in records])
            pipe.sadd(PROJECT_USERS, email)
            await pipe.execute()
        return records

    async def ensure_loaded(self, email: str) -> None:
        if not await self.redis.exists(projects_key(email)):
            await self.refill(email)

    async def sync(self, job: SyncJob, zoho: ZohoClient) -> None:
        async with job.operation("fetch_projects", isolate=False) as op:
            fetched = await zoho.list_projects()
            projects = [ProjectRecord(p.id, p.name, p.status) for p in fetched]
            op.records = op.counts.seen = len(projects)
        job.progress(0.3, f"{len(projects)} projects")
        async with job.operation("fetch_users", isolate=False) as op:
            users = {u.id: u.email for u in await zoho.list_users()}
            op.records = op.counts.seen = len(users)
        async with job.operation("fetch_access", isolate=False) as op:
            pairs = await zoho.list_access()
            op.records = op.counts.seen = len(pairs)
            known = {p.project_id for p in projects}
            access = {(users[u], p) for u, p in pairs if u in users and p in known}
            op.counts.skipped = len(pairs) - len(access)
        job.progress(0.6, f"{len(access)} access records")
        if job.dry_run:
            return
        async with job.operation("store", isolate=False) as op:
            changes = await self.store.replace_all(projects, access, users)
            op.records = len(projects)
            op.counts.created = changes["created"]
            op.counts.updated = changes["updated"]
            op.counts.unchanged = changes["unchanged"]
            op.counts.deleted = changes["deleted"]
            op.details = {k: str(v) for k, v in changes.items()}
        async with job.operation("swap_cache", isolate=False) as op:
            op.records = await self._swap(projects, access, users)
        job.progress(1.0, "projects synced")

    async def _swap(
        self, projects: list[ProjectRecord], access: set[tuple[str, str]], users: dict[str, str]
    ) -> int:
        by_user: dict[str, set[str]] = {email: set() for email in users.values()}
        for email, project_id in access:
            by_user.setdefault(email, set()).add(project_id)
        previous = await self.redis.smembers(PROJECT_USERS)
        for email in previous:
            by_user.setdefault(email, set())
        tag = uuid.uuid4().hex[:8]

        def temp(key: str) -> str:
            return f"{key}:new:{tag}"

        async with self.redis.pipeline(transaction=False) as pipe:
            if projects:
                pipe.hset(temp(PROJECTS_DATA), mapping={
                    p.project_id: json.dumps(p.__dict__) for p in projects})
            for email, ids in by_user.items():
                pipe.sadd(temp(projects_key(email)), PROJECTS_LOADED, *ids)
            pipe.sadd(temp(PROJECT_USERS), "", *by_user)
            if users:
                pipe.hset(temp(USER_MAP), mapping=users)
            for key in (temp(PROJECTS_DATA), temp(PROJECT_USERS), temp(USER_MAP),
                        *(temp(projects_key(e)) for e in by_user)):
                pipe.expire(key, 3600)  # a crashed swap leaves nothing behind for long
            await pipe.execute()
        async with self.redis.pipeline(transaction=True) as pipe:
            if projects:
                pipe.rename(temp(PROJECTS_DATA), PROJECTS_DATA)
                pipe.persist(PROJECTS_DATA)
            else:
                pipe.delete(PROJECTS_DATA)
            for email in by_user:
                pipe.rename(temp(projects_key(email)), projects_key(email))
                pipe.persist(projects_key(email))
            pipe.rename(temp(PROJECT_USERS), PROJECT_USERS)
            pipe.srem(PROJECT_USERS, "")
            pipe.persist(PROJECT_USERS)
            if users:
                pipe.rename(temp(USER_MAP), USER_MAP)
                pipe.persist(USER_MAP)
            await pipe.execute()
        log.info("projects_swapped", users=len(by_user), projects=len(projects))
        return len(by_user)
