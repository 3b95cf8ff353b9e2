"""Client-side rate limiting, and what a response said about our limits.

    RateLimiter (protocol)                      acquire() before a send, complete(info) after
    ├── TokenBucket(rate, capacity)             pacing at a published rate, FIFO, pausable
    └── WindowLimiter(limit, window)            N per window, steered by X-Rate-Limit-* headers
    RateLimitInfo                               what a response said about our limits
    parse_retry_after(value)                    Retry-After (seconds or HTTP-date) → seconds
    pause_deadline(when)                        a TokenBucket pause lasting past ``when`` fails
    PausedTooLong                               …as does one longer than the bucket's max_pause

Clock, sleep and wall clock are constructor arguments, so tests drive time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx

from shared.upstream.errors import UpstreamUnavailable

__all__ = [
    "Clock",
    "PausedTooLong",
    "RateLimitInfo",
    "RateLimiter",
    "Sleep",
    "TokenBucket",
    "WindowLimiter",
    "parse_retry_after",
    "pause_deadline",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


# --------------------------------------------------------------------------- rate-limit info


def parse_retry_after(value: str | None, *, wall_clock: Clock = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or HTTP-date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - wall_clock())


def _header(headers: httpx.Headers, suffix: str) -> str | None:
    for prefix in ("x-rate-limit-", "x-ratelimit-", "ratelimit-"):
        value: str | None = headers.get(prefix + suffix)
        if value is not None:
            return value
    return None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What one response said about our limits (absent headers are None)."""

    status: int
    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None  # seconds until the window resets
    retry_after: float | None = None  # seconds, from Retry-After

    @classmethod
    def from_response(
        cls, response: httpx.Response, *, wall_clock: Clock = time.time
    ) -> RateLimitInfo:
        headers = response.headers
        limit = _number(_header(headers, "limit"))
        remaining = _number(_header(headers, "remaining"))
        reset = _number(_header(headers, "reset"))
        if reset is not None and reset > 1e9:  # an epoch timestamp, not a delta
            reset = max(0.0, reset - wall_clock())
        return cls(
            status=response.status_code,
            limit=int(limit) if limit is not None else None,
            remaining=int(remaining) if remaining is not None else None,
            reset_after=reset,
            retry_after=parse_retry_after(headers.get("retry-after"), wall_clock=wall_clock),
        )


# --------------------------------------------------------------------------- limiters


class RateLimiter(Protocol):
    """A client-side limiter: ``acquire`` before each send, ``complete`` once after it."""

    async def acquire(self) -> None: ...

    def complete(self, info: RateLimitInfo | None) -> None: ...


# The limiter's clock time past which the caller would rather fail than sit out a pause; a
# context variable because the limiter is reached through UpstreamClient, whose calls carry no
# deadline, and because tasks started inside the block inherit it.
_pause_deadline: ContextVar[float | None] = ContextVar("upstream_pause_deadline", default=None)


@contextmanager
def pause_deadline(when: float) -> Iterator[None]:
    """Within this block (and tasks started in it), a :class:`TokenBucket` pause lasting past
    ``when`` (on the bucket's clock) makes ``acquire`` raise :class:`PausedTooLong` at once:
    waiting would only run into the caller's own deadline (e.g. a sync run's time budget)."""
    token = _pause_deadline.set(when)
    try:
        yield
    finally:
        _pause_deadline.reset(token)


class PausedTooLong(UpstreamUnavailable):
    """The upstream asked us (Retry-After, an exhausted limit) to send nothing for longer than
    the caller waits. ``resume_at`` is when it allows calls again (epoch seconds)."""

    def __init__(self, upstream: str, seconds: float, resume_at: float, why: str) -> None:
        when = datetime.fromtimestamp(resume_at, UTC).isoformat(timespec="seconds")
        super().__init__(
            upstream, f"asked us to send nothing before {when} ({seconds:.0f} s from now), {why}",
            retry_after=seconds,
        )
        self.resume_at = resume_at


class TokenBucket:
    """Paces sends at ``rate`` per second after a burst of ``capacity``, first come first served.

    ``pause_until`` / ``penalize`` hold everyone (a 429's Retry-After, an exhausted
    X-Rate-Limit-Remaining); a pause ends with one token, so no burst follows it. A pause
    longer than ``max_pause`` seconds, or lasting past the caller's :func:`pause_deadline`, is
    not sat out: ``acquire`` raises :class:`PausedTooLong` (naming ``upstream``) at once.
    """

    def __init__(
        self,
        rate: float,
        capacity: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_pause: float | None = None,
        upstream: str = "upstream",
        wall_clock: Clock = time.time,
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self.max_pause = max_pause
        self.upstream = upstream
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._tokens = capacity
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()  # asyncio.Lock hands over in FIFO order

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now

    def _wait_for(self, tokens: float, now: float) -> float:
        self._refill(now)
        if now < self._paused_until:
            return self._paused_until - now
        deficit = tokens - self._tokens
        return deficit / self.rate if deficit > 1e-9 else 0.0

    def try_acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` now and return 0.0, or take nothing and return the seconds to wait.

        Never waits and ignores queued :meth:`acquire` callers: meant for servers (sandboxes).
        """
        wait = self._wait_for(tokens, self._clock())
        if wait == 0.0:
            self._tokens -= tokens
        return wait

    async def acquire(self, tokens: float = 1.0) -> None:
        if tokens > self.capacity:
            raise ValueError(f"cannot acquire {tokens} tokens from a bucket of {self.capacity}")
        self._refuse_long_pause(self._clock())  # before queueing behind callers sitting one out
        async with self._lock:
            while (wait := self._wait_for(tokens, self._clock())) > 0:
                self._refuse_long_pause(self._clock())  # a longer pause came while we waited
                await self._sleep(wait)
            self._tokens -= tokens

    def _refuse_long_pause(self, now: float) -> None:
        """Raises :class:`PausedTooLong` if the pause in force is longer than this caller waits
        (pacing waits are not pauses: they are short and always sat out)."""
        pause = self._paused_until - now
        if pause <= 0:
            return
        deadline = _pause_deadline.get()
        if self.max_pause is not None and pause > self.max_pause:
            why = f"longer than the {self.max_pause:g} s we wait"
        elif deadline is not None and self._paused_until > deadline:
            why = f"past this caller's deadline ({max(0.0, deadline - now):.0f} s from now)"
        else:
            return
        raise PausedTooLong(self.upstream, pause, self._wall_clock() + pause, why)

    def pause_until(self, when: float) -> None:
        """Send nothing before monotonic time ``when``; then one send, then pacing at ``rate``."""
        now = self._clock()
        self._refill(now)
        if when <= now:
            return
        self._paused_until = max(self._paused_until, when)
        self._tokens = min(self.capacity, 1.0)  # one send at the end of the pause, then pacing
        self._updated = max(self._updated, self._paused_until)

    def penalize(self, seconds: float) -> None:
        self.pause_until(self._clock() + seconds)

    def complete(self, info: RateLimitInfo | None) -> None:
        if info is None:
            return
        if info.status == 429:
            self.penalize(info.retry_after or info.reset_after or 1.0 / self.rate)
        elif info.remaining is not None and info.remaining <= 0 and info.reset_after:
            self.penalize(info.reset_after)


class WindowLimiter:
    """``limit`` sends per ``window`` seconds, never more, steered by X-Rate-Limit-* headers.

    Fits ShipStation v1 (40 per 60 s; Limit / Remaining / Reset-in-seconds on every response).
    While nothing is known (start, or a response without headers) a single probe goes first.
    From a header: remaining = reported remaining minus the sends still in flight (they may not
    have been counted yet), and never more than our own count; the window resets at
    receive time + Reset + ``margin`` (covers a Reset rounded down). Without headers it keeps
    its own fixed window from the first send.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        margin: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window positive")
        self.limit = limit
        self.window = window
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        self._remaining: int | None = None  # None: unknown, send one probe
        self._reset_at: float | None = None
        self._reset_from_header = False
        self._in_flight = 0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    @property
    def remaining(self) -> int | None:
        return self._remaining

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _roll(self, now: float) -> None:
        if self._reset_at is not None and now >= self._reset_at:
            self._remaining = max(0, self.limit - self._in_flight)
            self._reset_at = None
            self._reset_from_header = False

    def _start(self, now: float) -> None:
        self._in_flight += 1
        if self._reset_at is None:
            self._reset_at = now + self.window + self.margin

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await self._sleep(self._paused_until - now)
                    continue
                self._roll(now)
                if self._remaining is None and self._in_flight == 0:  # probe
                    self._start(now)
                    return
                if self._remaining is not None and self._remaining > 0:
                    self._remaining -= 1
                    self._start(now)
                    return
                if self._remaining is not None and self._reset_at is not None:
                    await self._sleep(self._reset_at - now)
                elif self._in_flight > 0:  # a response will tell us more
                    self._changed.clear()
                    await self._changed.wait()
                else:
                    self._reset_at = now + self.window

    def complete(self, info: RateLimitInfo | None) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        now = self._clock()
        if info is not None and info.limit:
            self.limit = info.limit
        if info is not None and info.remaining is not None and info.reset_after is not None:
            self._observe(now, info.remaining, now + info.reset_after + self.margin)
        elif self._remaining is None:  # the probe came back without headers: count ourselves
            self._remaining = max(0, self.limit - 1 - self._in_flight)
        if info is not None and info.status == 429:
            self._remaining = 0
            wait = info.retry_after or info.reset_after
            if wait:
                self._paused_until = max(self._paused_until, now + wait)
        self._changed.set()

    def _observe(self, now: float, remaining: int, reset_at: float) -> None:
        estimate = max(0, remaining - self._in_flight)
        tolerance = self.window / 2
        if self._reset_at is not None and self._reset_from_header:
            if reset_at > self._reset_at + tolerance:  # a new window began at the server
                self._remaining, self._reset_at = estimate, reset_at
                return
            if reset_at < self._reset_at - tolerance:  # a late answer from the last window
                return
            reset_at = min(reset_at, self._reset_at)
        self._remaining = estimate if self._remaining is None else min(self._remaining, estimate)
        self._reset_at, self._reset_from_header = reset_at, True
