"""The one way every service talks to a third-party API.

    UpstreamClient(name, http, limiter, retry)     request / get_json / post_json / aclose
    ├── UpstreamStats                               counters: sends, retries, 429s, waits
    ├── AttemptRecord                               one attempt, as reported to ``on_attempt``
    └── create_http_client(base_url, ...)           the httpx.AsyncClient it sends with

Clock, sleep and wall clock are constructor arguments, so tests drive time.
Nothing here logs a credential: URLs and headers go through :func:`redact_url` /
:func:`redact_headers`, and error messages taken from bodies are shortened and scrubbed
(:func:`error_summary`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from shared.redaction import MASK, redact_headers, redact_text, redact_url
from shared.upstream.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamHttpError,
    UpstreamUnavailable,
)
from shared.upstream.limits import Clock, RateLimiter, RateLimitInfo, Sleep, parse_retry_after
from shared.upstream.retry import RetryPolicy

__all__ = [
    "AttemptRecord",
    "UpstreamClient",
    "UpstreamStats",
    "create_http_client",
    "error_summary",
]


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
