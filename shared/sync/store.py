"""SQL for sync jobs and the per-scope locks (one running job per lock key, across replicas)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.errors import AlreadyRunning
from shared.sync.job import Counts, Operation, SyncJob

__all__ = ["JobRecord", "SyncJobStore"]


@dataclass(frozen=True)
class JobRecord:
    """A job as stored (possibly run by another replica)."""

    id: str
    scope: str
    status: str
    full: bool
    dry_run: bool
    reason: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]
    operations: list[dict[str, Any]]
    error: str
    message: str
    progress: float

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> JobRecord:
        return cls(
            id=str(row["id"]), scope=row["scope"], status=row["status"],
            full=row["full_sync"], dry_run=row["dry_run"], reason=row["reason"],
            started_at=row["started_at"], finished_at=row["finished_at"],
            counts=row["counts"], operations=row["operations"], error=row["error"],
            message=row["message"], progress=row["progress"],
        )

    @classmethod
    def from_job(cls, job: SyncJob) -> JobRecord:
        return cls(
            id=job.id, scope=job.scope, status=job.status, full=job.full, dry_run=job.dry_run,
            reason=job.reason, started_at=job.started_at, finished_at=job.finished_at,
            counts=job.counts.as_dict(), operations=[op.as_dict() for op in job.operations],
            error=job.error, message=job.message, progress=job.fraction,
        )


def operations_from_dicts(items: list[dict[str, Any]]) -> list[Operation]:
    return [
        Operation(
            name=item["name"], ok=item["ok"], records=item["records"],
            duration_seconds=item["duration_seconds"], error=item["error"],
            counts=Counts(**item["counts"]), details=item["details"],
        )
        for item in items
    ]


_COLUMNS = ("id, scope, status, full_sync, dry_run, reason, started_at, finished_at, counts,"
            " operations, error, message, progress")


class SyncJobStore:
    def __init__(self, pool: asyncpg.Pool, replica: str, stale_after_seconds: float = 60.0):
        self._pool = pool
        self._replica = replica
        self._stale = stale_after_seconds

    async def start(self, job: SyncJob, lock_keys: tuple[str, ...]) -> None:
        """Records the job RUNNING and takes its locks, or raises AlreadyRunning."""
        async with self._pool.acquire() as connection, connection.transaction():
            await self._expire_abandoned(connection)
            await connection.execute(
                "INSERT INTO sync_jobs (id, scope, status, full_sync, dry_run, reason,"
                " started_at, replica) VALUES ($1, $2, 'RUNNING', $3, $4, $5, $6, $7)",
                uuid.UUID(job.id), job.scope, job.full, job.dry_run, job.reason,
                job.started_at, self._replica,
            )
            for key in sorted(lock_keys):
                taken = await connection.fetchval(
                    "INSERT INTO sync_locks (lock_key, job_id) VALUES ($1, $2)"
                    " ON CONFLICT (lock_key) DO NOTHING RETURNING job_id",
                    key, uuid.UUID(job.id),
                )
                if taken is None:
                    holder = await connection.fetchrow(
                        "SELECT l.job_id, j.scope FROM sync_locks l JOIN sync_jobs j"
                        " ON j.id = l.job_id WHERE l.lock_key = $1", key,
                    )
                    running_scope = holder["scope"] if holder else key
                    running_id = str(holder["job_id"]) if holder else "unknown"
                    raise AlreadyRunning(running_scope, running_id)

    async def _expire_abandoned(self, connection: asyncpg.Connection) -> None:
        stale = await connection.fetch(
            "UPDATE sync_jobs SET status = 'FAILED', finished_at = now(),"
            " error = 'abandoned: the replica running it stopped sending heartbeats'"
            " WHERE status = 'RUNNING' AND heartbeat_at < now() - make_interval(secs => $1)"
            " RETURNING id", self._stale,
        )
        if stale:
            await connection.execute(
                "DELETE FROM sync_locks WHERE job_id = ANY($1::uuid[])", [r["id"] for r in stale]
            )

    async def heartbeat(self, job: SyncJob) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "UPDATE sync_jobs SET heartbeat_at = now(), counts = $2, operations = $3,"
                " progress = $4, message = $5 WHERE id = $1",
                uuid.UUID(job.id), job.counts.as_dict(),
                [op.as_dict() for op in job.operations], job.fraction, job.message,
            )
            await connection.execute(
                "UPDATE sync_locks SET heartbeat_at = now() WHERE job_id = $1", uuid.UUID(job.id)
            )

    async def finish(self, job: SyncJob) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "UPDATE sync_jobs SET status = $2, finished_at = $3, heartbeat_at = now(),"
                " counts = $4, operations = $5, error = $6, message = $7, progress = $8"
                " WHERE id = $1",
                uuid.UUID(job.id), job.status, job.finished_at, job.counts.as_dict(),
                [op.as_dict() for op in job.operations], job.error, job.message, job.fraction,
            )
            await connection.execute("DELETE FROM sync_locks WHERE job_id = $1", uuid.UUID(job.id))

    async def get(self, job_id: str) -> JobRecord | None:
        try:
            key = uuid.UUID(job_id)
        except ValueError:
            return None
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM sync_jobs WHERE id = $1", key)
        return JobRecord.from_row(row) if row else None

    async def list(
        self, *, scope: str = "", status: str = "", limit: int = 20,
        before: tuple[datetime, str] | None = None,
    ) -> list[JobRecord]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM sync_jobs"
            " WHERE ($1 = '' OR scope = $1) AND ($2 = '' OR status = $2)"
            " AND ($3::timestamptz IS NULL OR (started_at, id) < ($3, $4::uuid))"
            " ORDER BY started_at DESC, id DESC LIMIT $5",
            scope, status, before[0] if before else None,
            uuid.UUID(before[1]) if before else None, limit,
        )
        return [JobRecord.from_row(row) for row in rows]

    async def scope_summary(self, scope: str) -> dict[str, Any]:
        """The running job, the last finished job and the last success time of a scope."""
        row = await self._pool.fetchrow(
            "SELECT"
            " (SELECT id FROM sync_jobs WHERE scope = $1 AND status = 'RUNNING'"
            "  ORDER BY started_at DESC LIMIT 1) AS running_id,"
            " (SELECT id FROM sync_jobs WHERE scope = $1 AND status <> 'RUNNING'"
            "  ORDER BY finished_at DESC NULLS LAST LIMIT 1) AS last_id,"
            " (SELECT max(finished_at) FROM sync_jobs WHERE scope = $1"
            "  AND status = 'COMPLETED' AND NOT dry_run) AS last_success",
            scope,
        )
        return {
            "running": await self.get(str(row["running_id"])) if row["running_id"] else None,
            "last_finished": await self.get(str(row["last_id"])) if row["last_id"] else None,
            "last_success": row["last_success"],
        }
