"""Customer KPIs: read from the ``customer_kpis_cache`` materialized view, refreshed
CONCURRENTLY (readers never wait), every refresh and failure logged to ``system_logs``.

The view's one row is also kept in memory for ``max_age`` seconds (a refresh on this replica
replaces it at once), so a busy dashboard costs the database one read a second."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from services.catalog.store import CatalogStore, KpiRow
from shared.errors import NotFound, Unavailable

__all__ = ["KpiService"]

log = structlog.get_logger("catalog.kpis")
LOG_SOURCE = "customer_kpis"


class KpiService:
    def __init__(self, store: CatalogStore, *, max_age: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._max_age = max_age
        self._clock = clock
        self._cached: tuple[float, KpiRow] | None = None

    async def read(self) -> KpiRow:
        cached = self._cached
        if cached is not None and self._clock() - cached[0] < self._max_age:
            return cached[1]
        row = await self._store.read_kpis()
        if row is None:
            raise NotFound("the KPI view holds no row yet: refresh it")
        self._cached = (self._clock(), row)
        return row

    async def refresh(self, reason: str) -> tuple[KpiRow, float]:
        """Refreshes the view; the new row and how long the refresh took."""
        try:
            _, seconds = await self._store.refresh_kpis()
        except Exception as error:
            log.error("kpi_refresh_failed", reason=reason, error=type(error).__name__)
            try:
                await self._store.log("ERROR", LOG_SOURCE, "KPI refresh failed",
                                      {"reason": reason, "error": type(error).__name__})
            except Exception as logging_error:  # the database itself is down
                log.error("system_log_failed", error=type(logging_error).__name__)
            raise Unavailable("the KPI view could not be refreshed") from None
        await self._store.log("INFO", LOG_SOURCE, "KPI view refreshed",
                              {"reason": reason, "duration_s": round(seconds, 4)})
        log.info("kpi_refreshed", reason=reason, duration_s=round(seconds, 4))
        self._cached = None
        return await self.read(), seconds
