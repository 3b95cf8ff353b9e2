"""Which products a price sync refreshes, in which order (pure logic, no I/O).

Tiers, in order: products a previous run did not reach (backlog), products in portfolios,
popular products (by view count), products viewed in the last 24 hours. A product appears once,
in its first tier; products fresh in every region are skipped unless the run is ``full``; at
most ``cap`` products are chosen.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

__all__ = ["TIERS", "Selection", "select_candidates"]

TIERS = ("backlog", "portfolio", "popular", "recent")


@dataclass
class Selection:
    chosen: list[str] = field(default_factory=list)
    tier_of: dict[str, str] = field(default_factory=dict)
    skipped_fresh: list[str] = field(default_factory=list)
    over_cap: list[str] = field(default_factory=list)  # wanted but past the cap

    def counts_by_tier(self) -> dict[str, int]:
        counts = dict.fromkeys(TIERS, 0)
        for product_id in self.chosen:
            counts[self.tier_of[product_id]] += 1
        return counts


def select_candidates(
    tiers: Sequence[Sequence[str]],
    cap: int,
    fresh: Collection[str] = frozenset(),
    *,
    full: bool = False,
) -> Selection:
    """``tiers`` are product-id lists in TIERS order, each already in its own priority order."""
    selection = Selection()
    seen: set[str] = set()
    for name, product_ids in zip(TIERS, tiers, strict=True):
        for product_id in product_ids:
            if not product_id or product_id in seen:
                continue
            seen.add(product_id)
            if not full and product_id in fresh:
                selection.skipped_fresh.append(product_id)
            elif len(selection.chosen) < cap:
                selection.chosen.append(product_id)
                selection.tier_of[product_id] = name
            else:
                selection.over_cap.append(product_id)
    return selection
