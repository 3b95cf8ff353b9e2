"""When a paged read counts as complete (unit tests of services/shipping/full_read.py)."""

from __future__ import annotations

from services.shipping.full_read import FullRead
from services.shipping.shipstation import Page


def _read(*totals: int | None) -> FullRead:
    read = FullRead()
    for total in totals:
        read.add(Page([], total))
    return read


def test_same_total_on_every_page_and_as_many_distinct_records_is_complete() -> None:
    read = _read(120, 120, 120)
    assert read.pages == 3
    assert read.why_incomplete(120) is None


def test_a_changed_total_a_missing_total_or_a_shortfall_is_not() -> None:
    assert "changed" in (_read(120, 119, 119).why_incomplete(119) or "")
    assert "did not report" in (_read(120, None).why_incomplete(120) or "")
    assert "119 distinct" in (_read(120, 120).why_incomplete(119) or "")
    assert _read().why_incomplete(0) == "no page was read"
