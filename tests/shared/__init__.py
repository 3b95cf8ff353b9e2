"""Tests of the shared runtime, and what they share."""

from __future__ import annotations

import asyncpg


async def no_connections(database_url: str, service: str) -> bool:
    """Whether no connection of ``service``'s pool is open on the database's server."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        return await connection.fetchval(
            "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = $1",
            f"syncsuite-{service}",
        ) is True
    finally:
        await connection.close()
