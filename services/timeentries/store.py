"""PostgreSQL: the source of truth for entries, projects and project access (all SQL here)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from services.timeentries.model import Entry

__all__ = ["EntryStore", "ProjectRecord", "ProjectStore", "latest_versions"]


@dataclass(frozen=True)
class ProjectRecord:
    project_id: str
    name: str
    status: str


def latest_versions(entries: Iterable[Entry]) -> list[Entry]:
    """One entry per id: the highest version."""
    latest: dict[str, Entry] = {}
    for entry in entries:
        known = latest.get(entry.id)
        if known is None or entry.version > known.version:
            latest[entry.id] = entry
    return list(latest.values())


_UPSERT = """
INSERT INTO time_entries AS t (entry_id, email, project_id, entry_date, duration_minutes,
    description, billable, version, deleted, create_time, update_time)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::date[], $5::int[], $6::text[],
    $7::bool[], $8::bigint[], $9::bool[], $10::timestamptz[], $11::timestamptz[])
ON CONFLICT (entry_id) DO UPDATE SET
    project_id = excluded.project_id, entry_date = excluded.entry_date,
    duration_minutes = excluded.duration_minutes, description = excluded.description,
    billable = excluded.billable, version = excluded.version, deleted = excluded.deleted,
    update_time = excluded.update_time, stored_time = now()
WHERE t.version < excluded.version
"""

_NO_ID = "00000000-0000-0000-0000-000000000000"  # sorts before every other uuid

_COLUMNS = """entry_id::text AS id, email, project_id, entry_date, duration_minutes, description,
    billable, version, deleted, create_time, update_time"""


def _entry(row: asyncpg.Record) -> Entry:
    return Entry(
        id=row["id"], email=row["email"], project_id=row["project_id"],
        date=row["entry_date"].isoformat(), minutes=row["duration_minutes"],
        description=row["description"], billable=row["billable"], version=row["version"],
        deleted=row["deleted"], create_time=row["create_time"].isoformat(),
        update_time=row["update_time"].isoformat(),
    )


class EntryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def upsert(self, entries: Iterable[Entry]) -> int:
        """Writes each entry unless PostgreSQL already has that version or a newer one; one
        statement, one transaction. Returns how many rows changed."""
        batch = latest_versions(entries)
        if not batch:
            return 0
        columns = (
            [e.id for e in batch], [e.email for e in batch], [e.project_id for e in batch],
            [e.day for e in batch], [e.minutes for e in batch], [e.description for e in batch],
            [e.billable for e in batch], [e.version for e in batch], [e.deleted for e in batch],
            [datetime.fromisoformat(e.create_time) for e in batch],
            [datetime.fromisoformat(e.update_time) for e in batch],
        )
        status = await self.pool.execute(_UPSERT, *columns)
        return int(status.rsplit(" ", 1)[-1])

    async def get(self, entry_id: str) -> Entry | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM time_entries WHERE entry_id = $1::uuid", entry_id
        )
        return _entry(row) if row else None

    async def list_range(
        self, email: str, first: date, last: date, after: tuple[date, str] | None, limit: int
    ) -> list[Entry]:
        """The user's live entries dated first..last after the (date, id) cursor, in order (a
        uuid sorts as its text does, so the order is the same as Redis's and Python's)."""
        after_date, after_id = after if after else (date.min, _NO_ID)
        rows = await self.pool.fetch(
            f"""SELECT {_COLUMNS} FROM time_entries
            WHERE email = $1 AND entry_date BETWEEN $2 AND $3 AND NOT deleted
              AND (entry_date, entry_id) > ($4, $5::uuid)
            ORDER BY entry_date, entry_id LIMIT $6""",
            email, first, last, after_date, after_id, limit,
        )
        return [_entry(row) for row in rows]

    async def live_ids_since(self, email: str, first: date) -> list[str]:
        """Ids of the user's live entries dated ``first`` or later."""
        rows = await self.pool.fetch(
            """SELECT entry_id::text FROM time_entries
            WHERE email = $1 AND entry_date >= $2 AND NOT deleted""", email, first)
        return [row[0] for row in rows]

    async def versions(self) -> dict[str, tuple[int, bool]]:
        """Every entry id with its version and deleted flag (tests, reconciliation)."""
        rows = await self.pool.fetch("SELECT entry_id::text, version, deleted FROM time_entries")
        return {row[0]: (row[1], row[2]) for row in rows}


class ProjectStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def replace_all(
        self, projects: list[ProjectRecord], access: set[tuple[str, str]], users: dict[str, str]
    ) -> dict[str, int]:
        """Makes PostgreSQL hold exactly these projects, access pairs (email, project id) and
        Zoho users (id → email), in one transaction; counts of what changed."""
        async with self.pool.acquire() as connection, connection.transaction():
            before = {
                row[0]: (row[1], row[2])
                for row in await connection.fetch("SELECT project_id, name, status FROM projects")
            }
            await connection.execute("""
                INSERT INTO projects (project_id, name, status)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
                ON CONFLICT (project_id) DO UPDATE SET name = excluded.name,
                    status = excluded.status, synced_time = now()
                WHERE (projects.name, projects.status) <> (excluded.name, excluded.status)""",
                [p.project_id for p in projects], [p.name for p in projects],
                [p.status for p in projects])
            ids = [p.project_id for p in projects]
            deleted = await connection.execute(
                "DELETE FROM projects WHERE NOT (project_id = ANY($1::text[]))", ids
            )
            emails = [pair[0] for pair in access]
            project_ids = [pair[1] for pair in access]
            revoked = await connection.execute("""
                DELETE FROM project_access a WHERE NOT EXISTS (
                    SELECT 1 FROM unnest($1::text[], $2::text[]) AS n(email, project_id)
                    WHERE n.email = a.email AND n.project_id = a.project_id)""",
                emails, project_ids)
            granted = await connection.execute("""
                INSERT INTO project_access (email, project_id)
                SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING""",
                emails, project_ids)
            await connection.execute("DELETE FROM zoho_users")
            await connection.execute(
                "INSERT INTO zoho_users (user_id, email) "
                "SELECT * FROM unnest($1::text[], $2::text[])",
                list(users), list(users.values()),
            )
        created = sum(1 for p in projects if p.project_id not in before)
        updated = sum(1 for p in projects
                      if p.project_id in before and before[p.project_id] != (p.name, p.status))
        return {
            "created": created, "updated": updated,
            "unchanged": len(projects) - created - updated,
            "deleted": _count(deleted), "access_revoked": _count(revoked),
            "access_granted": _count(granted),
        }

    async def is_empty(self) -> bool:
        return not await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM projects)")

    async def for_user(self, email: str) -> list[ProjectRecord]:
        rows = await self.pool.fetch("""
            SELECT p.project_id, p.name, p.status FROM project_access a
            JOIN projects p USING (project_id) WHERE a.email = $1 ORDER BY p.name, p.project_id""",
            email)
        return [ProjectRecord(*row) for row in rows]

    async def email_to_user_id(self, email: str) -> str | None:
        value: str | None = await self.pool.fetchval(
            "SELECT user_id FROM zoho_users WHERE email = $1 LIMIT 1", email
        )
        return value


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])
