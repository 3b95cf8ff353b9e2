"""The one way every service talks to a third-party API.

    UpstreamClient(name, http, limiter, retry)     request / get_json / post_json / aclose
    ├── RateLimiter (protocol)                      acquire() before a send, complete(info) after
    │   ├── TokenBucket(rate, capacity)             pacing at a published rate, FIFO, pausable
    │   └── WindowLimiter(limit, window)            N per window, steered by X-Rate-Limit-* headers
    ├── RetryPolicy                                 full-jitter backoff that honours Retry-After
    └── RateLimitInfo                               what a response said about our limits

Errors (all :class:`shared.errors.UpstreamError`, so UNAVAILABLE unless a service maps them)::

    UpstreamError
    ├── UpstreamHttpError(status, code)     a 4xx we must not retry
    │   └── UpstreamAuthError               401 / 403
    └── UpstreamUnavailable(retry_after)    429 / 5xx / timeouts / connection errors, retries spent
        └── UpstreamBadResponse             a success status with a body that is not JSON

Clock, sleep, wall clock and random generator are constructor arguments, so tests drive time.
Nothing here logs a credential: URLs and headers go through :func:`redact_url` /
:func:`redact_headers`, and error messages taken from bodies are shortened and scrubbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
import structlog

from shared.errors import UpstreamError
from shared.redaction import MASK, redact_headers, redact_text, redact_url

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "AttemptRecord",
    "RateLimitInfo",
    "RateLimiter",
    "RetryPolicy",
    "TokenBucket",
    "UpstreamAuthError",
    "UpstreamBadResponse",
    "UpstreamClient",
    "UpstreamHttpError",
    "UpstreamStats",
    "UpstreamUnavailable",
    "WindowLimiter",
    "create_http_client",
    "error_summary",
    "parse_retry_after",
    "redact_headers",
    "redact_url",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})


# --------------------------------------------------------------------------- errors


class UpstreamHttpError(UpstreamError):
    """The upstream answered a 4xx that retrying will not fix. ``code`` is its error code."""

    def __init__(
        self, upstream: str, message: str, status: int, *, code: str | None = None
    ) -> None:
        super().__init__(upstream, message, status)
        self.code = code


class UpstreamAuthError(UpstreamHttpError):
    """401 or 403: credentials are missing, wrong, expired or not allowed."""


class UpstreamUnavailable(UpstreamError):
    """Retries are spent (429, 5xx, timeouts, connection errors) or the wait asked is too long."""

    def __init__(
        self,
        upstream: str,
        message: str,
        status: int | None = None,
        *,
        attempts: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(upstream, message, status)
        self.attempts = attempts
        self.retry_after = retry_after


class UpstreamBadResponse(UpstreamUnavailable):
    """A success status whose body could not be decoded as JSON, on every attempt."""


# --------------------------------------------------------------------------- redaction

_LONG_RUN = re.compile(r"[A-Za-z0-9_\-]{24,}={0,2}")


def _token_like(match: re.Match[str]) -> str:
    """Long runs of letters AND digits (keys, tokens, signatures); error codes stay."""
    run = match.group()
    is_secret = any(c.isdigit() for c in run) and any(c.isalpha() for c in run)
    return MASK if is_secret else run


def _scrub(text: str, limit: int = 200) -> str:
    text = " ".join(text[: limit * 4].split())
    text = redact_text(text)
    text = _LONG_RUN.sub(_token_like, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_CODE_KEYS = ("o:errorCode", "code", "error_code", "errorCode", "error_type")
_MESSAGE_KEYS = ("detail", "message", "Message", "title", "error_description", "error")
_NESTED_KEYS = ("o:errorDetails", "errors", "error")


def _find_error(obj: Any, depth: int = 0) -> tuple[str | None, str | None]:
    if depth > 3:
        return None, None
    if isinstance(obj, list):
        return _find_error(obj[0], depth + 1) if obj else (None, None)
    if not isinstance(obj, dict):
        return None, None
    for key in _NESTED_KEYS:
        if isinstance(obj.get(key), dict | list):
            code, message = _find_error(obj[key], depth + 1)
            if code or message:
                return code, message
    code = next((str(obj[k]) for k in _CODE_KEYS if isinstance(obj.get(k), str | int)), None)
    message = next((obj[k] for k in _MESSAGE_KEYS if isinstance(obj.get(k), str)), None)
    return code, message


def _error_code(response: httpx.Response) -> str | None:
    try:
        code, _ = _find_error(response.json())
    except ValueError:
        return None
    return code


def error_summary(response: httpx.Response) -> str:
    """A short, credential-free description of an error response, from its body if it can."""
    reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    try:
        code, message = _find_error(response.json())
    except ValueError:
        if "html" in response.headers.get("content-type", "") or not response.text.strip():
            return reason
        return _scrub(f"{reason}: {response.text}")
    detail = ": ".join(part for part in (code, message) if part)
    return _scrub(f"{reason}: {detail}") if detail else reason


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


class TokenBucket:
    """Paces sends at ``rate`` per second after a burst of ``capacity``, first come first served.

    ``pause_until`` / ``penalize`` hold everyone (a 429's Retry-After, an exhausted
    X-Rate-Limit-Remaining); a pause ends with one token, so no burst follows it.
    """

    def __init__(
        self,
        rate: float,
        capacity: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
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
        async with self._lock:
            while (wait := self._wait_for(tokens, self._clock())) > 0:
                await self._sleep(wait)
            self._tokens -= tokens

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


# --------------------------------------------------------------------------- retry policy


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


# --------------------------------------------------------------------------- client


@dataclass(slots=True)
class UpstreamStats:
    """Counters for one client: what we sent and what came back."""

    requests: int = 0  # attempts actually sent
    retries: int = 0
    throttled: int = 0  # 429 responses
    timeouts: int = 0
    connection_errors: int = 0
    failures: int = 0  # calls that raised
    limiter_wait: float = 0.0  # seconds spent waiting for the rate limiter
    backoff_wait: float = 0.0  # seconds spent sleeping between attempts


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt, as reported to ``on_attempt`` (URL already redacted)."""

    upstream: str
    method: str
    url: str
    attempt: int
    status: int | None
    error: str | None
    elapsed: float


_SEND_KWARGS = ("auth", "follow_redirects")
_TRANSPORT_ERRORS = (httpx.NetworkError, httpx.RemoteProtocolError)


class UpstreamClient:
    """Rate-limited, retrying HTTP calls to one third-party API.

    Order per attempt: concurrency slot → rate limiter → send. Backoff sleeps hold neither.
    ``attempt_timeout`` caps one attempt end to end (httpx timeouts are per socket operation,
    and do not apply to in-process ASGI transports).
    """

    def __init__(
        self,
        name: str,
        http: httpx.AsyncClient,
        limiter: RateLimiter | None,
        retry: RetryPolicy,
        concurrency: int | None = None,
        on_attempt: Callable[[AttemptRecord], None] | None = None,
        *,
        attempt_timeout: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall_clock: Clock = time.time,
        logger: Any = None,
    ) -> None:
        self.name = name
        self.http = http
        self.limiter = limiter
        self.retry = retry
        self.stats = UpstreamStats()
        self._slots = asyncio.Semaphore(concurrency) if concurrency else None
        self._on_attempt = on_attempt
        self._attempt_timeout = attempt_timeout
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._log = logger if logger is not None else structlog.get_logger()

    async def request(
        self, method: str, url: str, *, retry: RetryPolicy | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send with limits and retries; the successful response, or an ``UpstreamError``."""
        response, _ = await self._call(method, url, retry or self.retry, False, kwargs)
        return response

    async def get_json(self, url: str, *, retry: RetryPolicy | None = None, **kwargs: Any) -> Any:
        """GET and decode JSON (None for 204 or an empty body); malformed bodies are retried."""
        return (await self._call("GET", url, retry or self.retry, True, kwargs))[1]

    async def post_json(
        self, url: str, json: Any = None, *, retry: RetryPolicy | None = None, **kwargs: Any
    ) -> Any:
        """POST ``json`` and decode the JSON answer, like :meth:`get_json`."""
        kwargs["json"] = json
        return (await self._call("POST", url, retry or self.retry, True, kwargs))[1]

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _call(
        self, method: str, url: str, policy: RetryPolicy, want_json: bool, kwargs: dict[str, Any]
    ) -> tuple[httpx.Response, Any]:
        send_kwargs = {k: kwargs.pop(k) for k in _SEND_KWARGS if k in kwargs}
        attempt = 0
        while True:
            attempt += 1
            request = self.http.build_request(method, url, **kwargs)
            response, error = await self._attempt(request, send_kwargs, attempt)
            status = response.status_code if response is not None else None
            retry_after: float | None = None
            malformed = False
            if response is None:
                reason = type(error).__name__
            elif response.status_code < 400:
                if not want_json:
                    return response, None
                try:
                    return response, _decode(response)
                except ValueError:
                    reason, malformed = "malformed JSON body", True
            elif policy.is_retryable(response):
                reason = error_summary(response)
                retry_after = parse_retry_after(
                    response.headers.get("retry-after"), wall_clock=self._wall_clock
                )
            else:
                self.stats.failures += 1
                raise self._http_error(response)
            too_long = retry_after is not None and retry_after > policy.max_retry_after
            if attempt >= policy.max_attempts or too_long:
                break
            delay = policy.delay(attempt - 1, retry_after)
            self.stats.retries += 1
            self.stats.backoff_wait += delay
            self._log.warning(
                "upstream_retry",
                upstream=self.name,
                method=method,
                url=redact_url(request.url),
                attempt=attempt,
                status=status,
                reason=reason,
                delay=round(delay, 3),
            )
            await self._sleep(delay)
        self.stats.failures += 1
        if too_long:
            reason = f"{reason} (asked to retry after {retry_after:.0f} s)"
        self._log.warning(
            "upstream_failed",
            upstream=self.name,
            method=method,
            url=redact_url(request.url),
            headers=redact_headers(request.headers),
            attempts=attempt,
            status=status,
            reason=reason,
        )
        error_class = UpstreamBadResponse if malformed else UpstreamUnavailable
        raise error_class(
            self.name,
            f"{reason} after {attempt} attempt(s)",
            status,
            attempts=attempt,
            retry_after=retry_after,
        )

    async def _attempt(
        self, request: httpx.Request, send_kwargs: dict[str, Any], attempt: int
    ) -> tuple[httpx.Response | None, Exception | None]:
        started = self._clock()
        response: httpx.Response | None = None
        error: Exception | None = None
        try:
            response = await self._send(request, send_kwargs)
        except (httpx.TimeoutException, TimeoutError) as exc:
            self.stats.timeouts += 1
            error = exc
        except _TRANSPORT_ERRORS as exc:
            self.stats.connection_errors += 1
            error = exc
        if response is not None and response.status_code == 429:
            self.stats.throttled += 1
        if self._on_attempt is not None:
            self._on_attempt(
                AttemptRecord(
                    upstream=self.name,
                    method=request.method,
                    url=redact_url(request.url),
                    attempt=attempt,
                    status=response.status_code if response is not None else None,
                    error=type(error).__name__ if error is not None else None,
                    elapsed=self._clock() - started,
                )
            )
        return response, error

    async def _send(self, request: httpx.Request, send_kwargs: dict[str, Any]) -> httpx.Response:
        async with self._slots if self._slots is not None else contextlib.nullcontext():
            if self.limiter is not None:
                waited_from = self._clock()
                await self.limiter.acquire()
                self.stats.limiter_wait += self._clock() - waited_from
            info: RateLimitInfo | None = None
            try:
                self.stats.requests += 1
                async with asyncio.timeout(self._attempt_timeout):
                    response = await self.http.send(request, **send_kwargs)
                info = RateLimitInfo.from_response(response, wall_clock=self._wall_clock)
                return response
            finally:
                if self.limiter is not None:
                    self.limiter.complete(info)

    def _http_error(self, response: httpx.Response) -> UpstreamHttpError:
        error_class = UpstreamAuthError if response.status_code in (401, 403) else UpstreamHttpError
        return error_class(
            self.name, error_summary(response), response.status_code, code=_error_code(response)
        )


def _decode(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content.strip():
        return None
    return json.loads(response.content)


# --------------------------------------------------------------------------- http client


def create_http_client(
    base_url: str,
    *,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
    auth: httpx.Auth | tuple[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 20,
) -> httpx.AsyncClient:
    """An HTTP/1.1 client with bounded connect/pool waits, pooled keep-alive, no redirects."""
    bounded = min(timeout, 10.0)
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=bounded, pool=timeout),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        ),
        headers={"user-agent": "syncsuite", **(headers or {})},
        auth=auth,
        transport=transport,
        http1=True,
        http2=False,
        follow_redirects=False,
    )

