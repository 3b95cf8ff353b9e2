"""The small LRU the search index keeps its results and answers in."""

from __future__ import annotations

import pytest

from services.catalog.lru import LRU


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recent
    cache.put("c", 3)
    assert len(cache) == 2
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    cache.put("a", 10)  # a put refreshes too
    cache.put("d", 4)
    assert cache.get("c") is None and cache.get("a") == 10


def test_an_lru_holds_something() -> None:
    with pytest.raises(ValueError):
        LRU(0)
