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

**With an invalidation feed** (:mod:`shared.invalidation`: PostgreSQL ``LISTEN``, fed by a
trigger that sends ``NOTIFY`` when a version changes) a hit skips even that round trip: while
the feed is connected, a value is answered from memory until a notification names one of its
*tags* (e.g. its product id). PostgreSQL delivers a notification when its transaction commits,
so a replica answers a committed change as soon as the notification has arrived (measured in
``make bench``: well under a millisecond on loopback) instead of on the very next read. No
value is trusted that might have been read before a change whose notification was missed:

* a value is trusted only if no notification for any of its tags arrived after its load began
  (a change committed while it was read may or may not be in it), and
* whenever the feed connects, reconnects or drops, every value held goes back to being checked
  against the database on its next read (as without a feed) until it is loaded again while the
  feed is up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from shared.lru import LRU

__all__ = ["EVERYTHING", "UNCHANGED", "CacheStats", "Unchanged", "Versioned", "VersionedReadCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Unchanged:
    """The loader's answer when the database is still at the version the cache holds."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()

EVERYTHING: Final = "*"
"""The tag of a notification that every value may have changed (e.g. a table truncated)."""


@dataclass(frozen=True, slots=True)
class Versioned(Generic[V]):
    """A value and the data version it was built from; ``tags`` name what it shows (e.g. its
    product id), as the invalidation feed's notifications do. A value with no version (None)
    is answered but not held: nothing could ever confirm it."""

    version: Hashable | None
    value: V
    tags: tuple[str, ...] = ()


@dataclass(slots=True)
class _Held(Generic[V]):
    versioned: Versioned[V]
    feed_epoch: int  # the feed's epoch when the load began (-1: the feed was down)
    loaded_after: int  # notifications received before the load began


@dataclass
class CacheStats:
    hits: int = 0  # the database confirmed the held version
    trusted_hits: int = 0  # answered from memory: the feed said nothing changed
    misses: int = 0  # nothing held, or the database had a newer version
    evictions: int = 0
    notifications: int = 0


Loader = Callable[[Versioned[V] | None], Awaitable[Versioned[V] | Unchanged]]
"""Given what the cache holds for the key (or None), returns :data:`UNCHANGED` if the database
is still at ``held.version``, else the current version and value. It must check and read in a
single statement (one snapshot), so that the version it returns is the one the value shows."""


class VersionedReadCache(Generic[K, V]):
    """Values by key, least recently used evicted beyond ``max_entries``. ``on_event(result)``
    (``"hit"`` / ``"miss"``) feeds a metric, e.g. ``partial(metrics.cache_hit, "pricing")``.
    :meth:`feed_up`, :meth:`feed_down` and :meth:`invalidate` are called by an invalidation
    feed (see the module's docstring); without one, every read checks the database."""

    # tags named by notifications, kept to judge loads still running; beyond this many, the
    # record starts over and everything held is checked again once (as after a reconnect)
    MAX_NOTIFIED_TAGS: Final = 100_000

    def __init__(
        self, *, max_entries: int = 4096, on_event: Callable[[str], object] | None = None
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._entries: LRU[K, _Held[V]] = LRU(max_entries)
        self._on_event = on_event
        self.stats = CacheStats()
        self._feed_epoch = -1  # -1: no feed connected; else bumped on every (re)connect
        self._next_epoch = 0
        self._received = 0  # notifications received so far
        self._notified: dict[str, int] = {}  # tag -> value of _received when last named

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def feed_connected(self) -> bool:
        return self._feed_epoch >= 0

    def held(self, key: K) -> Versioned[V] | None:
        """What the cache holds for ``key``, unchecked (for inspection and tests)."""
        held = self._entries.peek(key)
        return held.versioned if held is not None else None

    def clear(self) -> None:
        self._entries.clear()

    # -- the invalidation feed

    def feed_up(self) -> None:
        """The feed is listening (again): values loaded from now on may be trusted; values held
        from before are checked on their next read (notifications may have been missed)."""
        self._feed_epoch = self._next_epoch
        self._next_epoch += 1
        self._notified.clear()

    def feed_down(self) -> None:
        """The feed lost its connection: every read checks the database until it is back."""
        self._feed_epoch = -1

    def invalidate(self, tags: Iterable[str]) -> None:
        """A committed change named ``tags``: values showing any of them are no longer trusted
        (they are checked against the database on their next read)."""
        self._received += 1
        self.stats.notifications += 1
        if not self.feed_connected:
            return  # nothing loaded now is trusted, and feed_up starts the record over
        if len(self._notified) >= self.MAX_NOTIFIED_TAGS:
            self.feed_up()  # start the record over: everything held is checked once
        tags = tuple(tags)
        if EVERYTHING in tags:
            self.feed_up()  # a new epoch: neither held values nor running loads are trusted
            return
        for tag in tags:
            self._notified[tag] = self._received

    def _fed(self, held: _Held[V]) -> bool:
        """Loaded while the feed is up, in its current connection, and tagged: what the feed
        has said since then about ``held`` is all there is to know."""
        return held.feed_epoch == self._feed_epoch and held.feed_epoch >= 0 and bool(
            held.versioned.tags)

    def _named(self, held: _Held[V]) -> bool:
        """A notification named one of ``held``'s tags after its load began."""
        notified = self._notified
        return any(notified.get(tag, 0) > held.loaded_after for tag in held.versioned.tags)

    # -- reads

    async def get(self, key: K, load: Loader[V]) -> V:
        """The value for ``key`` as of the database's current version (see :data:`Loader`), or
        as of the feed's last notification while the feed is up. A held value the feed has
        named since its load is not offered to the loader (``held`` is None): it changed, so
        confirming it would be a wasted check. A loader that raises leaves the cache as it
        was."""
        held = self._entries.get(key)
        offered = held
        if held is not None and self._fed(held):
            if not self._named(held):
                self.stats.trusted_hits += 1
                self._event("hit")
                return held.versioned.value
            offered = None  # the feed named it: changed, not worth the loader's confirming
        feed_epoch, loaded_after = self._feed_epoch, self._received
        answer = await load(offered.versioned if offered is not None else None)
        if isinstance(answer, Unchanged):
            if offered is None:
                raise RuntimeError("the loader answered UNCHANGED although nothing was offered")
            self.stats.hits += 1
            answer = offered.versioned
            self._event("hit")
        else:
            self.stats.misses += 1
            self._event("miss")
        if answer.version is None:
            self._entries.discard(key)  # what was held is older still
        else:
            self.stats.evictions += self._entries.put(key, _Held(answer, feed_epoch,
                                                                 loaded_after))
        return answer.value

    def _event(self, result: str) -> None:
        if self._on_event is not None:
            self._on_event(result)
