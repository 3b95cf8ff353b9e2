"""A per-replica read cache that is never older than the database.

Each cached value is stamped with the *data version* it was built from. The version lives in
PostgreSQL next to the data it covers and changes in the same transaction as that data (a
sequence value written by the sync), so it says exactly which committed state a value shows.

A read never trusts the cache on its own: the loader asks the database, in the one round trip
the read needs anyway, "is it still at the version I hold?", and the database answers either
:data:`UNCHANGED` (the cached value is the current state) or the current version with the new
data. So every replica sees a committed sync on its next read, with no expiry time to tune and
no notification that could be missed; what the cache saves is the database's work of reading
the rows, their transfer and decoding, and the Python work of shaping them into a response.

Versions are compared for equality only: any committed change must give a version never used
before for that key (a sequence value does).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

__all__ = ["UNCHANGED", "CacheStats", "Unchanged", "Versioned", "VersionedReadCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Unchanged:
    """The loader's answer when the database is still at the version the cache holds."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()


@dataclass(frozen=True, slots=True)
class Versioned(Generic[V]):
    """A value and the data version it was built from."""

    version: Hashable
    value: V


@dataclass
class CacheStats:
    hits: int = 0  # the database confirmed the held version
    misses: int = 0  # nothing held, or the database had a newer version
    evictions: int = 0


Loader = Callable[[Versioned[V] | None], Awaitable[Versioned[V] | Unchanged]]
"""Given what the cache holds for the key (or None), returns :data:`UNCHANGED` if the database
is still at ``held.version``, else the current version and value. It must check and read in a
single statement (one snapshot), so that the version it returns is the one the value shows."""


class VersionedReadCache(Generic[K, V]):
    """Values by key, least recently used evicted beyond ``max_entries``. ``on_event(result)``
    (``"hit"`` / ``"miss"``) feeds a metric, e.g. ``partial(metrics.cache_hit, "pricing")``."""

    def __init__(
        self, *, max_entries: int = 4096, on_event: Callable[[str], object] | None = None
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._entries: OrderedDict[K, Versioned[V]] = OrderedDict()
        self._max_entries = max_entries
        self._on_event = on_event
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def held(self, key: K) -> Versioned[V] | None:
        """What the cache holds for ``key``, unchecked (for inspection and tests)."""
        return self._entries.get(key)

    def clear(self) -> None:
        self._entries.clear()

    async def get(self, key: K, load: Loader[V]) -> V:
        """The value for ``key`` as of the database's current version (see :data:`Loader`).
        A loader that raises leaves the cache as it was."""
        held = self._entries.get(key)
        answer = await load(held)
        if isinstance(answer, Unchanged):
            if held is None:
                raise RuntimeError("the loader answered UNCHANGED although nothing was held")
            self.stats.hits += 1
            if key in self._entries:
                self._entries.move_to_end(key)
            self._event("hit")
            return held.value
        self.stats.misses += 1
        self._entries[key] = answer
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
            self.stats.evictions += 1
        self._event("miss")
        return answer.value

    def _event(self, result: str) -> None:
        if self._on_event is not None:
            self._on_event(result)
