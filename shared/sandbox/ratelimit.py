"""Vendor rate limits, emulated: limits are plain objects, one middleware applies any of them.

    FixedWindowLimit(limit, window)   N per window, X-Rate-Limit-Limit/Remaining/Reset headers
                                      (ShipStation v1: 40 per 60 s; a daily quota without headers)
    TokenBucketLimit(rate, capacity)  429 + Retry-After when faster (StockX 1/s, ShipStation v2)
    ConcurrencyLimit(max_in_flight)   over N in flight is rejected (NetSuite's account pool)

``RateLimitMiddleware(app, limit=…, reject=…, key=…)`` keys each limit by a client key, asks
``reject`` (the vendor's format) for the rejection response and adds the limit's headers to
every response. Each limit counts what it admitted and rejected; time comes from ``clock``.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.sandbox.faults import format_seconds
from shared.upstream import TokenBucket

__all__ = [
    "ConcurrencyLimit",
    "FixedWindowLimit",
    "KeyFunc",
    "RateLimitMiddleware",
    "Rejection",
    "Rejector",
    "SandboxLimit",
    "TokenBucketLimit",
    "Verdict",
    "default_reject",
    "global_key",
    "header_key",
]

Clock = Callable[[], float]
KeyFunc = Callable[[Request], str]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after: float | None = None


@dataclass(frozen=True)
class Rejection:
    """What a vendor's ``reject`` callback gets to build its response from."""

    kind: str  # "window" | "rate" | "concurrency"
    key: str
    retry_after: float | None
    headers: Mapping[str, str]


Rejector = Callable[[Rejection], Response]


class SandboxLimit(Protocol):
    kind: str
    admitted: int
    rejected: int

    def enter(self, key: str) -> Verdict: ...

    def leave(self, key: str) -> None: ...

    def stats(self) -> dict[str, Any]: ...


def default_reject(rejection: Rejection) -> Response:
    return JSONResponse({"message": "rate limit exceeded"}, status_code=429)


def global_key(request: Request) -> str:
    """One limit for everybody."""
    return "global"


def header_key(name: str, default: str = "anonymous") -> KeyFunc:
    """Key by a request header (e.g. the API key), stored only as a short digest."""

    def key(request: Request) -> str:
        value = request.headers.get(name)
        return hashlib.sha256(value.encode()).hexdigest()[:12] if value else default

    return key


class _Counted:
    kind = "limit"

    def __init__(self) -> None:
        self.admitted = 0
        self.rejected = 0
        self.rejected_by_key: Counter[str] = Counter()

    def _count(self, key: str, verdict: Verdict) -> Verdict:
        if verdict.allowed:
            self.admitted += 1
        else:
            self.rejected += 1
            self.rejected_by_key[key] += 1
        return verdict

    def leave(self, key: str) -> None:
        """Called once per admitted request when it is answered."""

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "admitted": self.admitted, "rejected": self.rejected}


class FixedWindowLimit(_Counted):
    """``limit`` requests per ``window`` seconds; the window starts at a key's first request
    (or at multiples of ``window`` when ``aligned``). Reset is whole seconds, rounded up."""

    kind = "window"

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Clock = time.monotonic,
        header_prefix: str | None = "X-Rate-Limit-",
        aligned: bool = False,
        retry_after_header: bool = False,
    ) -> None:
        super().__init__()
        self.limit = limit
        self.window = window
        self._clock = clock
        self._prefix = header_prefix
        self._aligned = aligned
        self._retry_after_header = retry_after_header
        self._windows: dict[str, tuple[float, int]] = {}

    def enter(self, key: str) -> Verdict:
        now = self._clock()
        start, used = self._windows.get(key, (float("-inf"), 0))
        if now >= start + self.window:
            start = now - now % self.window if self._aligned else now
            used = 0
        allowed = used < self.limit
        if allowed:
            used += 1
        self._windows[key] = (start, used)
        reset = start + self.window - now
        headers: dict[str, str] = {}
        if self._prefix is not None:
            headers[f"{self._prefix}Limit"] = str(self.limit)
            headers[f"{self._prefix}Remaining"] = str(self.limit - used)
            headers[f"{self._prefix}Reset"] = format_seconds(reset)
        if not allowed and self._retry_after_header:
            headers["Retry-After"] = format_seconds(reset)
        return self._count(key, Verdict(allowed, headers, None if allowed else reset))


class TokenBucketLimit(_Counted):
    """At most ``rate`` per second after a burst of ``capacity``; 429 + Retry-After beyond."""

    kind = "rate"

    def __init__(self, rate: float, capacity: float = 1.0, *, clock: Clock = time.monotonic):
        super().__init__()
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def enter(self, key: str) -> Verdict:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.capacity, clock=self._clock)
        wait = bucket.try_acquire()
        if wait == 0.0:
            return self._count(key, Verdict(True))
        return self._count(key, Verdict(False, {"Retry-After": format_seconds(wait)}, wait))


class ConcurrencyLimit(_Counted):
    """At most ``max_in_flight`` requests being answered at once per key."""

    kind = "concurrency"

    def __init__(self, max_in_flight: int) -> None:
        super().__init__()
        self.max_in_flight = max_in_flight
        self.in_flight: Counter[str] = Counter()
        self.peak = 0

    def enter(self, key: str) -> Verdict:
        if self.in_flight[key] >= self.max_in_flight:
            return self._count(key, Verdict(False))
        self.in_flight[key] += 1
        self.peak = max(self.peak, self.in_flight[key])
        return self._count(key, Verdict(True))

    def leave(self, key: str) -> None:
        self.in_flight[key] -= 1

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "peak": self.peak}


class RateLimitMiddleware:
    """Applies one :class:`SandboxLimit` to requests under ``path_prefix``."""

    def __init__(
        self,
        app: ASGIApp,
        limit: SandboxLimit,
        *,
        reject: Rejector = default_reject,
        key: KeyFunc = global_key,
        path_prefix: str = "",
        exempt_prefix: str = "/_sandbox/",
    ) -> None:
        self.app = app
        self.limit = limit
        self.reject = reject
        self.key = key
        self.path_prefix = path_prefix
        self.exempt_prefix = exempt_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not path.startswith(self.path_prefix)
            or path.startswith(self.exempt_prefix)
        ):
            await self.app(scope, receive, send)
            return
        key = self.key(Request(scope))
        verdict = self.limit.enter(key)
        if not verdict.allowed:
            response = self.reject(
                Rejection(self.limit.kind, key, verdict.retry_after, verdict.headers)
            )
            for name, value in verdict.headers.items():
                response.headers.setdefault(name, value)
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, _adding_headers(send, verdict.headers))
        finally:
            self.limit.leave(key)


def _adding_headers(send: Send, headers: Mapping[str, str]) -> Send:
    if not headers:
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            response_headers = MutableHeaders(scope=message)
            for name, value in headers.items():
                response_headers.setdefault(name, value)
        await send(message)

    return wrapped
