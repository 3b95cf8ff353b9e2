"""Whether a paged full read saw the whole listing, so that what it did not see may be marked
deleted.

ShipStation pages by page number, which is no snapshot: a record deleted upstream between two
page requests shifts the later ones back by one, and the first of the next page is never read.
Marking "not seen" as deleted after such a read would delete a live record. So a read counts as
complete only when every page reported the same ``total`` and the distinct records read equal
it; otherwise deletions wait for a later full read (the upserts of what was read still count).
"""

from __future__ import annotations

from typing import Any

from services.shipping.shipstation import Page

__all__ = ["FullRead"]


class FullRead:
    """What the pages of one read said about the listing's size."""

    def __init__(self) -> None:
        self._totals: list[int | None] = []  # as each page reported it

    @property
    def pages(self) -> int:
        return len(self._totals)

    def add(self, page: Page[Any]) -> None:
        self._totals.append(page.total)

    def why_incomplete(self, distinct: int) -> str | None:
        """Why the read may have missed a record, given the ``distinct`` records it read;
        None when it provably saw every one."""
        if not self._totals:
            return "no page was read"
        if None in self._totals:
            return "a page did not report the total"
        first, last = self._totals[0], self._totals[-1]
        if len(set(self._totals)) > 1:
            return f"the total changed during the read ({first} at first, {last} at the end)"
        if distinct != first:
            return f"{distinct} distinct records read but the total is {first}"
        return None
