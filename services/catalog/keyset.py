"""Reading a SuiteQL result set by id (keyset paging), many id ranges at once.

Offsets are positions in a result set that changes while it is read. A record deleted before
an offset moves every later record one place back, so the record on that page boundary is
read by neither page (and a full sync would then mark it deleted); a record that joins the
result set (modified during an incremental fetch) moves them on, so one is read twice. A
keyset page, ``id > <last id read> AND id <= <end of its range>``, is moved by nothing: a
record present for the whole read is read exactly once, whatever else changes.

Pages of one range follow each other, but a full fetch is tens of pages and NetSuite takes a
while for each, so ranges are read concurrently (:func:`read_range`): a range's first page
says how many rows it holds (``totalResults``) and where it got to (its last id); the rest of
the range is cut into as many ranges of equal id width as it has pages left, each read the
same way. NetSuite's ids are dense enough that this is about one page per range; a range that
holds more is cut again when its first page says so.

A read also says whether its rows add up to the ``totalResults`` every range reported when it
began (:attr:`Fetched.complete`). Keyset paging cannot miss a record, but a read that does
not add up saw records come and go (or NetSuite answer inconsistently): no record may be
inferred deleted from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Fetched", "IdRange", "Page", "read_range", "reported_total"]

Page = dict[str, Any]  # a SuiteQL answer: items, hasMore, totalResults, ...


@dataclass(frozen=True)
class IdRange:
    """The ids ``after < id <= last`` (``last`` None: no upper bound)."""

    after: int
    last: int | None = None

    def condition(self) -> str:
        """The range as a SuiteQL condition."""
        if self.last is None:
            return f"id > {self.after}"
        return f"id > {self.after} AND id <= {self.last}"

    def rest(self, after: int, parts: int) -> list[IdRange]:
        """What is left of this range past id ``after``, cut into ``parts`` ranges of about
        equal id width (one range when it has no upper bound: there is nothing to cut)."""
        if self.last is None:
            return [IdRange(after)]
        if self.last <= after:
            return []
        span = self.last - after
        parts = max(1, min(parts, span))
        bounds = [after + span * number // parts for number in range(1, parts + 1)]
        return [IdRange(low, high) for low, high in zip([after, *bounds[:-1]], bounds, strict=True)]


@dataclass(frozen=True)
class Fetched:
    """The rows of one fetch. ``complete``: they add up to the totals NetSuite reported as it
    answered; otherwise records came or went meanwhile (or NetSuite answered inconsistently),
    and a record missing from ``rows`` may still exist."""

    rows: list[Page]
    complete: bool


def reported_total(page: Page) -> int | None:
    """The page's ``totalResults``, or None when it did not say."""
    total = page.get("totalResults")
    if isinstance(total, bool) or not isinstance(total, int | str):
        return None
    try:
        return int(total)
    except ValueError:
        return None


async def read_range(read_page: Callable[[IdRange], Awaitable[Page]], ids: IdRange,
                     page_size: int, first: Page | None = None) -> Fetched:
    """Every row of ``ids`` in id order: its first page (``first`` when already read), then
    the rest of the range in concurrent sub-ranges, each read the same way."""
    page = first if first is not None else await read_page(ids)
    items = page["items"]
    total = reported_total(page)
    rows = list(items)
    complete = total is not None
    if page.get("hasMore") and items:
        reached = int(items[-1]["id"])
        if reached <= ids.after:  # the page did not move on: it cannot be read by id
            return Fetched(rows, False)
        left = page_size if total is None else total - len(items)
        parts = max(1, -(-left // page_size))
        reads = await asyncio.gather(*(read_range(read_page, rest, page_size)
                                       for rest in ids.rest(reached, parts)))
        for read in reads:
            rows.extend(read.rows)
            complete = complete and read.complete
    return Fetched(rows, complete and len(rows) == total)
