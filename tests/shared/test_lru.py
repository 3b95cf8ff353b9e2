"""shared.lru: the small LRU the catalog index and the read caches keep entries in."""

from __future__ import annotations

import pytest

from shared.lru import LRU


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: LRU[str, int] = LRU(2)
    assert cache.put("a", 1) == 0
    assert cache.put("b", 2) == 0
    assert cache.get("a") == 1  # "b" is now the least recent
    assert cache.peek("b") == 2  # a peek changes nothing
    assert cache.put("c", 3) == 1
    assert len(cache) == 2
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    cache.put("a", 10)  # a put refreshes too
    cache.put("d", 4)
    assert cache.get("c") is None and cache.get("a") == 10
    cache.clear()
    assert len(cache) == 0 and cache.peek("a") is None


def test_an_lru_holds_something() -> None:
    with pytest.raises(ValueError):
        LRU(0)
