"""Sets of record positions as bitmasks: a Python int whose bit ``p`` is set when the record at
position ``p`` is in the set.

Union, intersection, difference and counting are then single C loops over N/64 machine words
(N records), whatever the number of members: a set of 10,000 records costs about what a set of
ten does. Only turning positions into a mask, and a mask back into positions, walks members
one by one, so both are done for the few that are needed (one page, a few candidates).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Members", "both", "count", "listed", "mask_of", "members", "without"]

_BITS = tuple(1 << n for n in range(8))
_BYTE_MEMBERS = tuple(tuple(n for n in range(8) if byte >> n & 1) for byte in range(256))
_NONZERO = bytes([0] + [1] * 255)  # translate table: any set byte → 1, found by bytes.find
_BLOCK = 128  # bytes counted at once when skipping


def mask_of(positions: Iterable[int], size: int) -> int:
    """The mask of ``positions`` (each in ``range(size)``; repeats are fine)."""
    bits = bytearray((size + 7) >> 3)
    one = _BITS
    for position in positions:
        bits[position >> 3] |= one[position & 7]
    return int.from_bytes(bits, "little")


def members(mask: int, skip: int = 0, count: int | None = None) -> list[int]:
    """The positions in ``mask``, ascending, leaving out the first ``skip`` of them; at most
    ``count`` (all when None). Whole blocks of ``skip`` are counted, not walked; empty
    stretches are jumped over by a C search for the next set byte."""
    if skip < 0:
        raise ValueError("skip must not be negative")
    limit = mask.bit_count() - skip if count is None else count
    if limit <= 0 or not mask:
        return []
    data = mask.to_bytes((mask.bit_length() + 7) >> 3, "little")
    start = 0
    while skip:
        in_block = int.from_bytes(data[start:start + _BLOCK], "little").bit_count()
        if in_block > skip:
            break
        skip -= in_block
        start += _BLOCK
        if start >= len(data):
            return []
    find = data.translate(_NONZERO).find
    table = _BYTE_MEMBERS
    found: list[int] = []
    append = found.append
    at = find(1, start)
    while skip and at >= 0:  # what is left of skip, byte by byte
        bits = table[data[at]]
        if skip < len(bits):
            base = at << 3
            for bit in bits[skip:]:
                append(base + bit)
            skip = 0
        else:
            skip -= len(bits)
        at = find(1, at + 1)
    while at >= 0 and len(found) < limit:
        base = at << 3
        for bit in table[data[at]]:
            append(base + bit)
        at = find(1, at + 1)
    del found[limit:]
    return found


Members = int | list[int]
"""A set of positions: a mask, or (for a few) their ascending list."""


def count(found: Members) -> int:
    return len(found) if isinstance(found, list) else found.bit_count()


def listed(found: Members) -> list[int]:
    """The positions, ascending."""
    return found if isinstance(found, list) else members(found)


def both(a: Members, b: Members, size: int) -> Members:
    """The positions in ``a`` and in ``b``."""
    if isinstance(a, int) and isinstance(b, int):
        return a & b
    if isinstance(a, list) and isinstance(b, list):
        kept = set(b)
        return [position for position in a if position in kept]
    few, mask = (a, b) if isinstance(a, list) else (b, a)
    return members(mask_of(few, size) & mask)  # type: ignore[arg-type, operator]


def without(a: Members, b: Members, size: int) -> Members:
    """The positions in ``a`` and not in ``b`` (``b`` a part of ``a``)."""
    if isinstance(a, int):
        return a ^ (b if isinstance(b, int) else mask_of(b, size))
    dropped = set(listed(b))
    return [position for position in a if position not in dropped]
