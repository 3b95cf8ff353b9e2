"""SQL of the scheduler: job pause state, due-time claims, leases, runs.

Every due time of a job becomes exactly one row of ``runs`` (unique on job + scheduled time,
manual runs apart); the replica whose INSERT wins runs it. Decisions that need the job's other
runs (overlap, pause) are taken under a per-job transaction-scoped advisory lock, so two
replicas never both see "nothing running". Times come from the caller (the injectable clock).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from shared.errors import Conflict, NotFound

__all__ = ["Claim", "DueTime", "JobSchedule", "JobState", "RunRecord", "SchedulerStore",
           "Tally"]

_RUN_COLUMNS = (
    "id, job, trigger, scheduled_time, fire_time, status, started_at, finished_at, deadline_at,"
    " claimed_by, lease_expires_at, attempts, target, target_address, scope, full_sync, reason,"
    " target_job_id, report, error"
)
_JOB_STATE_COLUMNS = (
    "name, first_seen, last_due, paused, paused_at, schedule_since"
)
FIRED = ("RUNNING", "SUCCEEDED", "PARTIAL", "FAILED")


@dataclass(frozen=True)
class JobState:
    name: str
    first_seen: datetime
    last_due: datetime | None
    paused: bool
    paused_at: datetime | None
    # When the job's current schedule took effect (enabled again, cron or zone changed).
    schedule_since: datetime | None

    @property
    def cursor(self) -> datetime:
        """Due times after this one are still to be recorded."""
        return max(self.last_due or self.first_seen, self.schedule_since or self.first_seen)


@dataclass(frozen=True)
class JobSchedule:
    """What decides a job's due times, as ``ensure_jobs`` records it."""

    name: str
    enabled: bool
    cron: str
    time_zone: str


@dataclass(frozen=True)
class RunRecord:
    id: str
    job: str
    trigger: str
    scheduled_time: datetime
    fire_time: datetime
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime | None
    claimed_by: str
    lease_expires_at: datetime | None
    attempts: int
    target: str
    target_address: str
    scope: str
    full: bool
    reason: str
    target_job_id: str
    report: dict[str, Any] | None
    error: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> RunRecord:
        values = dict(row)
        values["id"] = str(values["id"])
        values["full"] = values.pop("full_sync")
        return cls(**values)


@dataclass(frozen=True)
class DueTime:
    scheduled: datetime
    fire: datetime


@dataclass(frozen=True)
class Claim:
    """What to insert for one job at one tick: older due times recorded MISSED, and the latest
    due time either fired (``run``) or recorded MISSED."""

    job: str
    missed: Sequence[DueTime]
    missed_reason: str
    latest: DueTime | None
    trigger: str  # schedule | catch_up (for ``latest``)
    forbid_overlap: bool
    target: str
    target_address: str
    scope: str
    full: bool
    timeout: timedelta


@dataclass(frozen=True)
class ClaimResult:
    run: RunRecord | None  # the RUNNING row this replica now owns
    inserted: dict[str, int]  # status -> rows this replica inserted


@dataclass(frozen=True)
class Tally:
    expected: int = 0
    ran: int = 0
    succeeded: int = 0
    partial: int = 0
    failed: int = 0
    skipped: int = 0
    missed: int = 0
    running: int = 0
    manual: int = 0


class SchedulerStore:
    def __init__(self, pool: asyncpg.Pool, replica: str) -> None:
        self._pool = pool
        self.replica = replica

    # -- jobs ---------------------------------------------------------------------------------
    async def ensure_jobs(
        self, jobs: Sequence[JobSchedule], now: datetime
    ) -> dict[str, JobState]:
        """Registers the jobs (first seen now) and records their schedules. A job that was
        disabled and is enabled now, or whose cron or time zone changed, has its schedule
        start now: the due times of the time it was off (or on another schedule) are not its
        missed runs."""
        rows = await self._pool.fetch(
            "INSERT INTO job_state AS state (name, first_seen, enabled, cron, time_zone)"
            " SELECT job.name, $2, job.enabled, job.cron, job.time_zone"
            " FROM unnest($1::text[], $3::boolean[], $4::text[], $5::text[])"
            " AS job(name, enabled, cron, time_zone) ON CONFLICT (name) DO UPDATE SET"
            " schedule_since = CASE WHEN (NOT state.enabled AND excluded.enabled)"
            " OR (state.cron IS NOT NULL AND (state.cron, state.time_zone)"
            " IS DISTINCT FROM (excluded.cron, excluded.time_zone))"
            " THEN GREATEST(state.schedule_since, $2) ELSE state.schedule_since END,"
            " enabled = excluded.enabled, cron = excluded.cron, time_zone = excluded.time_zone"
            f" RETURNING {_JOB_STATE_COLUMNS}",
            [job.name for job in jobs], now, [job.enabled for job in jobs],
            [job.cron for job in jobs], [job.time_zone for job in jobs],
        )
        return {row["name"]: JobState(**dict(row)) for row in rows}

    async def job_states(self, names: Sequence[str]) -> dict[str, JobState]:
        rows = await self._pool.fetch(
            f"SELECT {_JOB_STATE_COLUMNS} FROM job_state WHERE name = ANY($1::text[])",
            list(names),
        )
        return {row["name"]: JobState(**dict(row)) for row in rows}

    async def set_paused(self, name: str, paused: bool, now: datetime) -> JobState:
        row = await self._pool.fetchrow(
            "INSERT INTO job_state (name, first_seen, paused, paused_at) VALUES ($1, $2, $3,"
            " CASE WHEN $3::boolean THEN $2::timestamptz END) ON CONFLICT (name) DO UPDATE"
            " SET paused = $3, paused_at = CASE WHEN $3::boolean"
            " THEN coalesce(job_state.paused_at, $2::timestamptz) END"
            f" RETURNING {_JOB_STATE_COLUMNS}", name, now, paused,
        )
        return JobState(**dict(row))

    # -- claims -------------------------------------------------------------------------------
    async def claim(self, claim: Claim, now: datetime, lease: timedelta) -> ClaimResult:
        inserted: dict[str, int] = {}
        run: RunRecord | None = None
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext('scheduler-job:' || $1))", claim.job
            )
            dues = [*claim.missed, *([claim.latest] if claim.latest else [])]
            paused = await connection.fetchval(
                "UPDATE job_state SET last_due = GREATEST(last_due, $2) WHERE name = $1"
                " RETURNING paused", claim.job, max(due.scheduled for due in dues),
            )
            reason = "the job is paused" if paused else claim.missed_reason
            status = "SKIPPED" if paused else "MISSED"
            if claim.missed:
                count = await self._insert_unrun(
                    connection, claim, list(claim.missed), "schedule", status, reason
                )
                inserted[status] = inserted.get(status, 0) + count
            if claim.latest is None:
                return ClaimResult(None, inserted)
            if paused:
                count = await self._insert_unrun(
                    connection, claim, [claim.latest], claim.trigger, "SKIPPED", reason
                )
                inserted["SKIPPED"] = inserted.get("SKIPPED", 0) + count
                return ClaimResult(None, inserted)
            if claim.forbid_overlap:
                running = await connection.fetchval(
                    "SELECT id FROM runs WHERE job = $1 AND status = 'RUNNING'"
                    " ORDER BY scheduled_time LIMIT 1", claim.job,
                )
                if running is not None:
                    count = await self._insert_unrun(
                        connection, claim, [claim.latest], claim.trigger, "SKIPPED",
                        f"overlap forbidden: run {running} of this job is still running",
                    )
                    inserted["SKIPPED"] = inserted.get("SKIPPED", 0) + count
                    return ClaimResult(None, inserted)
            row = await connection.fetchrow(
                "INSERT INTO runs (id, job, trigger, scheduled_time, fire_time, status,"
                " started_at, deadline_at, claimed_by, lease_expires_at, attempts, target,"
                " target_address, scope, full_sync, reason)"
                " VALUES ($1, $2, $3, $4, $5, 'RUNNING', $6, $7, $8, $9, 1, $10, $11, $12, $13,"
                " $14) ON CONFLICT (job, scheduled_time) WHERE trigger <> 'manual' DO NOTHING"
                f" RETURNING {_RUN_COLUMNS}",
                uuid.uuid4(), claim.job, claim.trigger, claim.latest.scheduled,
                claim.latest.fire, now, now + claim.timeout, self.replica, now + lease,
                claim.target, claim.target_address, claim.scope, claim.full,
                _reason(claim.job, claim.latest.scheduled),
            )
            if row is not None:
                run = RunRecord.from_row(row)
                inserted["RUNNING"] = inserted.get("RUNNING", 0) + 1
        return ClaimResult(run, inserted)

    async def _insert_unrun(
        self, connection: asyncpg.Connection, claim: Claim, dues: list[DueTime], trigger: str,
        status: str, error: str,
    ) -> int:
        rows = await connection.fetch(
            "INSERT INTO runs (id, job, trigger, scheduled_time, fire_time, status, target,"
            " target_address, scope, full_sync, error)"
            " SELECT gen_random_uuid(), $1, $2, due.scheduled, due.fire, $3, $4, $5, $6, $7, $8"
            " FROM unnest($9::timestamptz[], $10::timestamptz[]) AS due(scheduled, fire)"
            " ON CONFLICT (job, scheduled_time) WHERE trigger <> 'manual' DO NOTHING RETURNING 1",
            claim.job, trigger, status, claim.target, claim.target_address, claim.scope,
            claim.full, error, [due.scheduled for due in dues], [due.fire for due in dues],
        )
        return len(rows)

    async def claim_manual(self, claim: Claim, now: datetime, lease: timedelta) -> RunRecord:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtext('scheduler-job:' || $1))", claim.job
            )
            if claim.forbid_overlap:
                running = await connection.fetchval(
                    "SELECT id FROM runs WHERE job = $1 AND status = 'RUNNING'"
                    " ORDER BY scheduled_time LIMIT 1", claim.job,
                )
                if running is not None:
                    raise Conflict(f"job {claim.job!r} is already running as run {running} "
                                   "and its overlap policy is forbid")
            run_id = uuid.uuid4()
            row = await connection.fetchrow(
                "INSERT INTO runs (id, job, trigger, scheduled_time, fire_time, status,"
                " started_at, deadline_at, claimed_by, lease_expires_at, attempts, target,"
                " target_address, scope, full_sync, reason)"
                " VALUES ($1, $2, 'manual', $3, $3, 'RUNNING', $3, $4, $5, $6, 1, $7, $8, $9,"
                f" $10, $11) RETURNING {_RUN_COLUMNS}",
                run_id, claim.job, now, now + claim.timeout, self.replica, now + lease,
                claim.target, claim.target_address, claim.scope, claim.full,
                _manual_reason(claim.job, str(run_id)),
            )
        return RunRecord.from_row(row)

    # -- leases -------------------------------------------------------------------------------
    async def renew(self, run_ids: Sequence[str], lease_until: datetime) -> set[str]:
        """Extends this replica's leases; returns the runs it still holds."""
        if not run_ids:
            return set()
        rows = await self._pool.fetch(
            "UPDATE runs SET lease_expires_at = $3 WHERE id = ANY($1::uuid[])"
            " AND claimed_by = $2 AND status = 'RUNNING' RETURNING id",
            [uuid.UUID(run_id) for run_id in run_ids], self.replica, lease_until,
        )
        return {str(row["id"]) for row in rows}

    async def take_over(
        self, now: datetime, lease_until: datetime, running_here: Sequence[str] = (),
        limit: int = 20,
    ) -> list[RunRecord]:
        """Runs whose lease expired (their replica died) now held by this replica; runs this
        replica is running itself (``running_here``) are left alone."""
        rows = await self._pool.fetch(
            "UPDATE runs SET claimed_by = $1, lease_expires_at = $3, attempts = attempts + 1"
            " WHERE id IN (SELECT id FROM runs WHERE status = 'RUNNING'"
            " AND lease_expires_at < $2 AND NOT id = ANY($5::uuid[])"
            " ORDER BY lease_expires_at LIMIT $4 FOR UPDATE SKIP LOCKED)"
            f" RETURNING {_RUN_COLUMNS}", self.replica, now, lease_until, limit,
            [uuid.UUID(run_id) for run_id in running_here],
        )
        return [RunRecord.from_row(row) for row in rows]

    async def release(self, run_ids: Sequence[str], now: datetime) -> None:
        """Lets another replica take these runs over at once (graceful stop)."""
        if run_ids:
            await self._pool.execute(
                "UPDATE runs SET lease_expires_at = $3 WHERE id = ANY($1::uuid[])"
                " AND claimed_by = $2 AND status = 'RUNNING'",
                [uuid.UUID(run_id) for run_id in run_ids], self.replica, now,
            )

    async def set_target_job(self, run_id: str, target_job_id: str) -> None:
        await self._pool.execute(
            "UPDATE runs SET target_job_id = $3 WHERE id = $1 AND claimed_by = $2",
            uuid.UUID(run_id), self.replica, target_job_id,
        )

    async def finish(
        self, run_id: str, status: str, finished_at: datetime, report: dict[str, Any] | None,
        error: str, target_job_id: str = "",
    ) -> bool:
        """Records the end of a run this replica holds (with the target's job id, in case
        storing it when the target accepted failed); False when another took it over."""
        done = await self._pool.fetchval(
            "UPDATE runs SET status = $3, finished_at = $4, report = $5, error = $6,"
            " lease_expires_at = NULL, target_job_id = coalesce(nullif($7, ''), target_job_id)"
            " WHERE id = $1 AND claimed_by = $2 AND status = 'RUNNING' RETURNING id",
            uuid.UUID(run_id), self.replica, status, finished_at, report, error[:2000],
            target_job_id,
        )
        return done is not None

    # -- reads --------------------------------------------------------------------------------
    async def get(self, run_id: str) -> RunRecord:
        row = await self._pool.fetchrow(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = $1", uuid.UUID(run_id)
        )
        if row is None:
            raise NotFound(f"no run {run_id}")
        return RunRecord.from_row(row)

    async def list(
        self, *, job: str = "", status: str = "", limit: int = 50,
        before: tuple[datetime, str] | None = None,
    ) -> list[RunRecord]:
        rows = await self._pool.fetch(
            f"SELECT {_RUN_COLUMNS} FROM runs"
            " WHERE ($1 = '' OR job = $1) AND ($2 = '' OR status = $2)"
            " AND ($3::timestamptz IS NULL OR (scheduled_time, id) < ($3, $4::uuid))"
            " ORDER BY scheduled_time DESC, id DESC LIMIT $5",
            job, status, before[0] if before else None,
            uuid.UUID(before[1]) if before else None, limit,
        )
        return [RunRecord.from_row(row) for row in rows]

    async def last_runs(self, names: Sequence[str]) -> dict[str, RunRecord]:
        rows = await self._pool.fetch(
            f"SELECT DISTINCT ON (job) {_RUN_COLUMNS} FROM runs WHERE job = ANY($1::text[])"
            " ORDER BY job, scheduled_time DESC, id DESC", list(names),
        )
        return {row["job"]: RunRecord.from_row(row) for row in rows}

    async def tally(self, job: str = "") -> Tally:
        rows = await self._pool.fetch(
            "SELECT trigger = 'manual' AS manual, status, count(*) AS n FROM runs"
            " WHERE ($1 = '' OR job = $1) GROUP BY 1, 2", job,
        )
        figures = dict.fromkeys(
            ("expected", "ran", "succeeded", "partial", "failed", "skipped", "missed", "running",
             "manual"), 0)
        for row in rows:
            if row["manual"]:
                figures["manual"] += row["n"]
                continue
            figures["expected"] += row["n"]
            figures[row["status"].lower()] += row["n"]
            if row["status"] in FIRED:
                figures["ran"] += row["n"]
        return Tally(**figures)

    async def prune(self, before: datetime) -> int:
        rows = await self._pool.fetch(
            "DELETE FROM runs WHERE status <> 'RUNNING' AND scheduled_time < $1 RETURNING 1",
            before,
        )
        return len(rows)


# The reason a run's Sync carries is unique to the run: a replica taking a run over finds by it
# the target's job that a previous holder started without recording its id.
def _reason(job: str, scheduled: datetime) -> str:
    return f"scheduler: {job} (due {scheduled.isoformat()})"


def _manual_reason(job: str, run_id: str) -> str:
    return f"scheduler: {job} (manual trigger, run {run_id})"
