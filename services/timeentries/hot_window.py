"""Proving that Redis holds a user's whole hot window, so that ListTimeEntries can skip
PostgreSQL for it.

By TTL alone, the by-date index holds every live entry dated in the hot window
(:meth:`HotStore.hot_window_start`): a write refreshes the index's TTL, and an entry that old
was written recently enough. What TTL reasoning cannot see is an index that was lost (Redis
restarted without its data, flushed, evicted) and recreated by a later write: it would lack
the entries PostgreSQL got before. So reads trust the index for the hot window only once it
carries the ``-complete`` marker, which a proof adds:

1. a nonce is placed in the index (the list script, or :meth:`HotStore.begin_proofs`);
2. PostgreSQL is asked for the user's live entry ids in the hot window;
3. one script checks that the nonce is still there (the index was neither lost nor recreated
   since step 1, so every entry not yet in PostgreSQL was written to it) and that each of those
   ids is in the index with its hash (or its hash holds a delete not drained yet), then adds the
   marker.

A lost index loses the marker with it; a hash found missing in the hot window withdraws it.
The PostgreSQL sink proves the index of each user in a batch it committed, so a user's index is
normally proven right after their first entries drain; ListTimeEntries proves it after a read
it had to answer from PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import asyncpg
import structlog
from redis.exceptions import RedisError

from services.timeentries.hot_store import HotStore, unique_token
from services.timeentries.model import utc_today
from services.timeentries.store import EntryStore

__all__ = ["prove_hot_window", "prove_hot_windows"]

log = structlog.get_logger("hot_window")


async def prove_hot_window(
    hot: HotStore, store: EntryStore, email: str, nonce: str, hot_start: date
) -> bool:
    """Steps 2 and 3 for one user whose index holds ``nonce``. A failure only means the proof
    did not happen (PostgreSQL keeps answering for the hot window)."""
    try:
        return await hot.prove(email, nonce, await store.live_ids_since(email, hot_start))
    except (RedisError, OSError, asyncpg.PostgresError) as error:
        log.info("hot_window_proof_failed", error_type=type(error).__name__)
        return False


async def prove_hot_windows(
    hot: HotStore, store: EntryStore, emails: Iterable[str], today: date | None = None
) -> int:
    """Proves the index of each of these users that is not proven yet; how many got proven.
    Costs one Redis round trip when all are proven already."""
    hot_start = hot.hot_window_start(today or utc_today())
    nonce = unique_token()
    try:
        pending = await hot.begin_proofs(sorted(set(emails)), nonce)
    except RedisError as error:
        log.info("hot_window_proof_failed", error_type=type(error).__name__)
        return 0
    proven = 0
    for email in pending:
        proven += await prove_hot_window(hot, store, email, nonce, hot_start)
    return proven
