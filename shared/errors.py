"""Domain errors, and the one place where they become gRPC status codes.

    SyncSuiteError                      INTERNAL (message never shown verbatim)
    ├── InvalidArgument(field, reason)  INVALID_ARGUMENT  "field: reason"
    ├── NotFound                        NOT_FOUND
    ├── AlreadyRunning(job_id)          ABORTED
    ├── Conflict                        ABORTED
    ├── Unauthenticated                 UNAUTHENTICATED
    ├── PermissionDenied                PERMISSION_DENIED
    ├── RateLimited                     RESOURCE_EXHAUSTED
    ├── Unavailable                     UNAVAILABLE (retryable: a dependency is down)
    │   └── UpstreamError               a third-party API failed (see shared.upstream)
    ├── DeadlineExceeded                DEADLINE_EXCEEDED
    └── FailedPrecondition              FAILED_PRECONDITION

Raise these from domain code; the server interceptor maps them with :func:`to_status`.
A backing store that cannot be reached (PostgreSQL, Redis, a refused or dropped connection)
becomes UNAVAILABLE, which callers retry; anything else escaping a handler becomes INTERNAL
with a generic message, so a stack trace or a secret never reaches a caller.
"""

from __future__ import annotations

import asyncpg
import grpc
import redis.exceptions

__all__ = [
    "AlreadyRunning",
    "Conflict",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "SyncSuiteError",
    "Unauthenticated",
    "Unavailable",
    "UpstreamError",
    "to_status",
]


class SyncSuiteError(Exception):
    """Base of every error a service raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    public = False  # whether the message may be shown to callers as is

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(SyncSuiteError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    public = True

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(SyncSuiteError):
    code = grpc.StatusCode.NOT_FOUND
    public = True


class Conflict(SyncSuiteError):
    code = grpc.StatusCode.ABORTED
    public = True


class AlreadyRunning(Conflict):
    def __init__(self, scope: str, job_id: str) -> None:
        super().__init__(f"a sync of scope '{scope}' is already running as job {job_id}")
        self.scope = scope
        self.job_id = job_id


class Unauthenticated(SyncSuiteError):
    code = grpc.StatusCode.UNAUTHENTICATED
    public = True


class PermissionDenied(SyncSuiteError):
    code = grpc.StatusCode.PERMISSION_DENIED
    public = True


class RateLimited(SyncSuiteError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    public = True


class Unavailable(SyncSuiteError):
    code = grpc.StatusCode.UNAVAILABLE
    public = True


class UpstreamError(Unavailable):
    """A third-party API failed after our retries. ``status`` is its HTTP status, if any."""

    def __init__(self, upstream: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{upstream}: {message}")
        self.upstream = upstream
        self.status = status


class DeadlineExceeded(SyncSuiteError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    public = True


class FailedPrecondition(SyncSuiteError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    public = True


def to_status(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and caller-facing message for any exception."""
    if isinstance(error, SyncSuiteError) and error.public:
        return error.code, error.message
    if isinstance(error, SyncSuiteError):
        return error.code, "internal error"
    if isinstance(error, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED, "this method is not implemented yet"
    if isinstance(error, TimeoutError | asyncpg.QueryCanceledError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "the operation timed out"
    if isinstance(error, _DATABASE_DOWN):
        return grpc.StatusCode.UNAVAILABLE, "the database (PostgreSQL) is unavailable; retry"
    if isinstance(error, _REDIS_DOWN):
        return grpc.StatusCode.UNAVAILABLE, "the cache (Redis) is unavailable; retry"
    if isinstance(error, ConnectionError):  # refused, reset, broken pipe: a socket's peer
        return grpc.StatusCode.UNAVAILABLE, (
            "a store or service this one needs (PostgreSQL, Redis) is unreachable; retry")
    return grpc.StatusCode.INTERNAL, "internal error"


# Connection-level failures only: a query PostgreSQL refused (a constraint, bad data) stays
# INTERNAL, as retrying cannot fix it. Operator intervention is a shutdown or a server that
# is not accepting connections yet (query cancellation is handled above, as a timeout).
_DATABASE_DOWN = (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError,
                  asyncpg.TooManyConnectionsError)
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
