"""Which failed attempts to retry, how often, and how long to wait between them."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection

import httpx

__all__ = ["DEFAULT_RETRY_STATUSES", "RetryPolicy"]

DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})


def _never(_: httpx.Response) -> bool:
    return False


class RetryPolicy:
    """Which failures to retry, how often, and how long to wait (full jitter, Retry-After)."""

    def __init__(
        self,
        max_attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 20.0,
        retry_statuses: Collection[int] = DEFAULT_RETRY_STATUSES,
        retry_if: Callable[[httpx.Response], bool] | None = None,
        *,
        max_retry_after: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.retry_statuses = frozenset(retry_statuses)
        self.retry_if = retry_if or _never
        self.max_retry_after = max_retry_after
        self._rng = rng or random.Random()

    @classmethod
    def no_retry(cls) -> RetryPolicy:
        """One attempt only: for writes that must not be repeated."""
        return cls(max_attempts=1)

    def is_retryable(self, response: httpx.Response) -> bool:
        return response.status_code in self.retry_statuses or self.retry_if(response)

    def backoff(self, retry_index: int) -> float:
        """Full jitter: uniform(0, min(max_delay, base_delay * 2**retry_index))."""
        return self._rng.uniform(0.0, min(self.max_delay, self.base_delay * 2.0**retry_index))

    def delay(self, retry_index: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry_index`` (0 = the first retry)."""
        return max(self.backoff(retry_index), retry_after or 0.0)
