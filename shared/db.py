"""asyncpg pools, one schema per service."""

from __future__ import annotations

import json
import re
from typing import Any

import asyncpg

__all__ = ["create_pool", "quote_ident"]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_ident(name: str) -> str:
    """A schema or table name we chose ourselves, checked and quoted (never user input)."""
    if not _IDENT.match(name):
        raise ValueError(f"not a valid identifier: {name!r}")
    return f'"{name}"'


async def _init_connection(connection: asyncpg.Connection) -> None:
    for json_type in ("json", "jsonb"):
        await connection.set_type_codec(
            json_type, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool release without asyncpg's default reset query (a round trip on every release).
    asyncpg still rolls back an open transaction; the suite never changes session state
    (SET, LISTEN, session advisory locks) on pooled connections, so there is nothing to reset."""


async def create_pool(
    database_url: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeout: float = 10.0,
    **kwargs: Any,
) -> asyncpg.Pool:
    """A pool whose connections use ``schema`` first (migrations create it)."""
    quote_ident(schema)
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        command_timeout=60,  # for requests; migrations pass their own, longer timeouts
        init=_init_connection,
        reset=_keep_session,
        server_settings={
            "search_path": f"{schema},public",
            "application_name": f"syncsuite-{schema}",
        },
        **kwargs,
    )
    return pool
