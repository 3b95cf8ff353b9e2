"""What a price sync run did: per region, per product, and with its products as a whole (pure
logic, no I/O; sync.py fills these in)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from services.pricing.stockx import MarketData
from services.pricing.store import WriteResult

__all__ = ["ProductOutcome", "RegionOutcome", "RunProducts", "every_product_failed",
           "split_answer"]


def split_answer(
    market: list[MarketData], product_id: str, currency: str
) -> tuple[list[MarketData], str]:
    """The rows that answer what we asked (``product_id`` in ``currency``; a row without a
    productId is taken as ours), and why the others were left out ('' if none were)."""
    kept: list[MarketData] = []
    strays: list[MarketData] = []
    for row in market:
        ours = row.currency_code == currency and row.product_id in ("", product_id)
        (kept if ours else strays).append(row)
    if not strays:
        return kept, ""
    answered = sorted({f"{row.product_id or product_id} in {row.currency_code}"
                       for row in strays})
    return kept, (f"{len(strays)} of {len(market)} rows answered {', '.join(answered)}, "
                  f"not {product_id} in {currency}: left out")


@dataclass
class RegionOutcome:
    currency: str
    result: WriteResult | None = None  # also set when some rows were left out (error says so)
    error: str = ""
    lasting: bool = False  # the error stops the run (StockXClient.lasting_failure)


@dataclass
class ProductOutcome:
    product_id: str
    regions: list[RegionOutcome] = field(default_factory=list)
    error: str = ""  # the product failed before its regions (catalog)
    error_lasting: bool = False
    interrupted: bool = False  # cancelled at the time budget or when the run stopped

    @property
    def failed_regions(self) -> list[RegionOutcome]:
        return [region for region in self.regions if region.error]

    @property
    def lasting_error(self) -> str:
        """The error that stops the run, if this product met one."""
        if self.error_lasting:
            return self.error
        return next((region.error for region in self.regions if region.lasting), "")

    @property
    def reason(self) -> str:
        """Why it failed, as one line."""
        return self.error or "; ".join(f"{r.currency}: {r.error}" for r in self.failed_regions)

    @property
    def status(self) -> str:
        if self.error or (self.regions and len(self.failed_regions) == len(self.regions)):
            return "failed"
        return "partial" if self.failed_regions else "ok"

    @property
    def snapshots(self) -> int:
        return sum(region.result.snapshots for region in self.regions if region.result)


@dataclass
class RunProducts:
    """One run's products: waiting, in flight and done, and why the run stopped early."""

    queue: deque[str]
    in_flight: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    outcomes: dict[str, ProductOutcome] = field(default_factory=dict)
    stopped_by: str = ""  # a lasting failure's reason

    @property
    def unreached(self) -> list[str]:
        return [*self.in_flight, *self.queue]


def every_product_failed(products: RunProducts) -> str:
    """The job's error when no product processed was synced, even in part."""
    unreached = len(products.unreached)
    queued = f"; {unreached} products queued for the next run" if unreached else ""
    if products.stopped_by:
        return f"stopped early: {products.stopped_by}{queued}"[:1000]
    first = next(iter(products.outcomes.values()))
    return (f"every product failed ({len(products.outcomes)}); the first: "
            f"{first.reason}{queued}")[:1000]
