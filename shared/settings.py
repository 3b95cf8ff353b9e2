"""Settings every service shares (ports, backends, auth, logging). Domain settings extend it.

Each value is checked when it is read, so a bad one stops the service at start with a
:class:`~shared.config.ConfigError` naming its variable, not later with a driver's error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.config import (
    MAX_PORT,
    Secret,
    env,
    non_negative,
    one_of,
    port,
    positive,
    positive_int,
)
from shared.migrations import DEFAULT_LOCK_TIMEOUT_SECONDS, DEFAULT_STATEMENT_TIMEOUT_SECONDS
from shared.sealing import Sealer, SealingError

__all__ = ["DEFAULT_SHUTDOWN_GRACE", "METRICS_OFF", "RuntimeSettings"]

METRICS_OFF = -1
DEFAULT_SHUTDOWN_GRACE = 10.0
# A bearer token short enough to guess is no protection; HS256 wants a key as long as its
# 32-byte hash (RFC 7518 §3.2). `make run` generates 43 characters, docker-compose asks for 64.
MIN_ADMIN_TOKEN_BYTES = 16
MIN_JWT_SECRET_BYTES = 32


def _url(*schemes: str) -> Callable[[str], Secret]:
    prefixes = [f"{scheme}://" for scheme in schemes]
    expected = f"{', '.join(prefixes[:-1])} or {prefixes[-1]}"

    def parse(raw: str) -> Secret:
        if urlsplit(raw.strip()).scheme.lower() not in schemes:
            raise ValueError(f"must be a URL starting with {expected}")
        return Secret(raw)

    return parse


def _secret_of_at_least(minimum_bytes: int) -> Callable[[str], Secret]:
    def parse(raw: str) -> Secret:
        if len(raw.encode()) < minimum_bytes:
            raise ValueError(f"must be at least {minimum_bytes} bytes long"
                             " (generate one with: openssl rand -hex 32)")
        return Secret(raw)

    return parse


def _data_key(raw: str) -> Secret:
    try:
        Sealer.from_setting(raw)
    except SealingError:
        raise ValueError("must be the base64 of 32 random bytes"
                         " (generate one with: openssl rand -base64 32)") from None
    return Secret(raw)


def _metrics_port(raw: str) -> int:
    if int(raw) == METRICS_OFF:
        return METRICS_OFF
    try:
        return port(raw)
    except ValueError:
        raise ValueError(
            f"must be a port number, 0 to {MAX_PORT}, or {METRICS_OFF} (off)") from None


@dataclass(frozen=True)
class RuntimeSettings:
    database_url: Secret = env(
        "DATABASE_URL", parse=_url("postgresql", "postgres"),
        help="PostgreSQL URL (found by `make run`)",
    )
    redis_url: Secret = env(
        "REDIS_URL", parse=_url("redis", "rediss", "unix"), help="Redis URL (found by `make run`)"
    )
    admin_token: Secret | None = env(
        "SYNCSUITE_ADMIN_TOKEN", "CRON_SECRET", "SYNC_AUTH_TOKEN", default=None,
        parse=_secret_of_at_least(MIN_ADMIN_TOKEN_BYTES),
        help="bearer token for admin RPCs; admin RPCs are refused when unset",
    )
    jwt_secret: Secret | None = env(
        "SYNCSUITE_JWT_SECRET", "SUPABASE_JWT_SECRET", default=None,
        parse=_secret_of_at_least(MIN_JWT_SECRET_BYTES),
        help="HS256 secret of user JWTs; user RPCs are refused when unset",
    )
    jwt_audience: str = env("SYNCSUITE_JWT_AUDIENCE", default="authenticated")
    data_key: Secret | None = env(
        "SYNCSUITE_DATA_KEY", default=None, parse=_data_key,
        help="base64 of 32 random bytes sealing secrets stored at rest (shipping requires it)",
    )
    host: str = env("SYNCSUITE_HOST", default="127.0.0.1", help="address the servers bind")
    grpc_port: int | None = env(
        "SYNCSUITE_GRPC_PORT", default=None, parse=port,
        help="unset = the service's default; 0 = any free port",
    )
    metrics_port: int | None = env(
        "SYNCSUITE_METRICS_PORT", default=None, parse=_metrics_port,
        help="unset = gRPC port + 1000 (any free port when gRPC has one); -1 = off",
    )
    db_pool_size: int = env("SYNCSUITE_DB_POOL_SIZE", default=10, parse=positive_int)
    shutdown_grace_seconds: float = env(
        "SYNCSUITE_SHUTDOWN_GRACE", default=DEFAULT_SHUTDOWN_GRACE, parse=non_negative,
        help="seconds in-flight RPCs get after SIGTERM",
    )
    migration_lock_timeout_seconds: float = env(
        "SYNCSUITE_MIGRATION_LOCK_TIMEOUT", default=DEFAULT_LOCK_TIMEOUT_SECONDS,
        parse=positive,
        help="how long a replica waits while another one applies the migrations",
    )
    migration_timeout_seconds: float = env(
        "SYNCSUITE_MIGRATION_TIMEOUT", default=DEFAULT_STATEMENT_TIMEOUT_SECONDS,
        parse=positive,
        help="how long one migration file may run",
    )
    log_format: str = env(
        "SYNCSUITE_LOG_FORMAT", default="auto", parse=one_of("auto", "json", "console"),
        help="auto | json | console",
    )
    log_level: str = env(
        "SYNCSUITE_LOG_LEVEL", default="info",
        parse=one_of("debug", "info", "warning", "warn", "error", "critical"),
    )
