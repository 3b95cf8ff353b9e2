"""OAuth2 access tokens from a refresh-token grant, shared by the upstream clients.

A subclass says how to run the grant (:meth:`RefreshingToken.grant`); this class keeps the
token, renews it ``margin`` seconds before it expires (or halfway through its life, if that
is shorter than the margin: else a short-lived token would be refreshed for every call), lets
one refresh run at a time however many callers wait, and forgets a token the API refused (401)
unless a newer one replaced it.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AccessToken", "RefreshingToken"]


@dataclass(frozen=True)
class AccessToken:
    value: str
    lifetime_seconds: float


class RefreshingToken(abc.ABC):
    def __init__(
        self, *, margin_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._margin = margin_seconds
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()
        self.refreshes = 0

    @abc.abstractmethod
    async def grant(self) -> AccessToken:
        """Runs the refresh-token grant against the vendor's token endpoint."""

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._renew_at

    async def get(self) -> str:
        """A token valid for at least ``margin`` seconds (or half its life) more, refreshing
        it if needed."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    granted = await self.grant()
                    self._token = granted.value
                    lifetime = granted.lifetime_seconds
                    self._renew_at = (self._clock() + lifetime
                                      - min(self._margin, lifetime / 2))
                    self.refreshes += 1
        assert self._token is not None
        return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (the API refused it) unless a newer one replaced it already."""
        if self._token == token:
            self._token = None
