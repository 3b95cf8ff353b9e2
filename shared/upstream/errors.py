"""The errors of :mod:`shared.upstream` (all :class:`shared.errors.UpstreamError`, so UNAVAILABLE
unless a service maps them)::

    UpstreamError
    ├── UpstreamHttpError(status, code)     a 4xx we must not retry
    │   └── UpstreamAuthError               401 / 403
    └── UpstreamUnavailable(retry_after)    429 / 5xx / timeouts / connection errors, retries spent
        └── UpstreamBadResponse             a success status with a body that is not JSON
"""

from __future__ import annotations

from shared.errors import UpstreamError

__all__ = [
    "UpstreamAuthError",
    "UpstreamBadResponse",
    "UpstreamError",
    "UpstreamHttpError",
    "UpstreamUnavailable",
]


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
