"""Sets of positions as bitmasks (or lists of a few): members, skipping, counting, combining."""

from __future__ import annotations

import random

import pytest

from services.catalog.bitsets import both, count, listed, mask_of, members, without


def test_members_walks_sparse_and_dense_masks_with_skip_and_count() -> None:
    rng = random.Random(5)
    for size, share in ((5000, 0.001), (5000, 0.3), (3000, 1.0), (9, 0.5)):
        chosen = sorted(p for p in range(size) if rng.random() < share)
        mask = mask_of(chosen, size)
        assert members(mask) == chosen
        assert count(mask) == len(chosen)
        for skip in (0, 1, 7, 300, 1000, len(chosen) - 1, len(chosen), len(chosen) + 5):
            for wanted in (1, 20, None):
                end = None if wanted is None else max(skip, 0) + wanted
                assert members(mask, skip, wanted) == chosen[skip:end], (size, share, skip)


def test_members_of_nothing_and_a_negative_skip() -> None:
    assert members(0) == [] and members(0, 3, 5) == []
    with pytest.raises(ValueError):
        members(0b101, -1)


def test_mask_of_takes_repeats_and_any_order() -> None:
    assert mask_of([9, 2, 9, 0], 10) == (1 << 9) | (1 << 2) | 1


def test_both_and_without_agree_across_masks_and_lists() -> None:
    rng = random.Random(9)
    size = 700
    a = sorted(rng.sample(range(size), 300))
    b = sorted(rng.sample(range(size), 200))
    expected = [p for p in a if p in set(b)]
    for left in (a, mask_of(a, size)):
        for right in (b, mask_of(b, size)):
            found = both(left, right, size)
            assert listed(found) == expected
            rest = without(left, found, size)
            assert listed(rest) == [p for p in a if p not in set(expected)]
