"""The one way every service talks to a third-party API.

    UpstreamClient(name, http, limiter, retry)     request / get_json / post_json / aclose
    ├── RateLimiter (protocol)                      acquire() before a send, complete(info) after
    │   ├── TokenBucket(rate, capacity)             pacing at a published rate, FIFO, pausable;
    │   │                                           pause_deadline(when): a pause past it fails
    │   └── WindowLimiter(limit, window)            N per window, steered by X-Rate-Limit-* headers
    ├── RetryPolicy                                 full-jitter backoff that honours Retry-After
    └── RateLimitInfo                               what a response said about our limits

Errors (all :class:`shared.errors.UpstreamError`, so UNAVAILABLE unless a service maps them)::

    UpstreamError
    ├── UpstreamHttpError(status, code)     a 4xx we must not retry
    │   └── UpstreamAuthError               401 / 403
    └── UpstreamUnavailable(retry_after)    429 / 5xx / timeouts / connection errors, retries spent
        ├── UpstreamBadResponse             a success status with a body that is not JSON
        └── PausedTooLong(resume_at)        asked to wait longer than the caller would

Clock, sleep, wall clock and random generator are constructor arguments, so tests drive time.
Nothing here logs a credential: URLs and headers go through :func:`redact_url` /
:func:`redact_headers`, and error messages taken from bodies are shortened and scrubbed.
"""

from shared.redaction import redact_headers, redact_url
from shared.upstream.client import (
    AttemptRecord,
    UpstreamClient,
    UpstreamStats,
    create_http_client,
    error_summary,
)
from shared.upstream.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamHttpError,
    UpstreamUnavailable,
)
from shared.upstream.errors import UpstreamError as UpstreamError  # not in __all__, as before
from shared.upstream.limits import (
    PausedTooLong,
    RateLimiter,
    RateLimitInfo,
    TokenBucket,
    WindowLimiter,
    parse_retry_after,
    pause_deadline,
)
from shared.upstream.retry import DEFAULT_RETRY_STATUSES, RetryPolicy

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "AttemptRecord",
    "PausedTooLong",
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
    "pause_deadline",
    "redact_headers",
    "redact_url",
]
