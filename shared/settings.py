"""Settings every service shares (ports, backends, auth, logging). Domain settings extend it."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Secret, env

__all__ = ["RuntimeSettings"]


@dataclass(frozen=True)
class RuntimeSettings:
    database_url: Secret = env("DATABASE_URL", help="PostgreSQL URL (found by `make run`)")
    redis_url: Secret = env("REDIS_URL", help="Redis URL (found by `make run`)")
    admin_token: Secret | None = env(
        "SYNCSUITE_ADMIN_TOKEN", "CRON_SECRET", "SYNC_AUTH_TOKEN", default=None,
        help="bearer token for admin RPCs; admin RPCs are refused when unset",
    )
    jwt_secret: Secret | None = env(
        "SYNCSUITE_JWT_SECRET", "SUPABASE_JWT_SECRET", default=None,
        help="HS256 secret of user JWTs; user RPCs are refused when unset",
    )
    jwt_audience: str = env("SYNCSUITE_JWT_AUDIENCE", default="authenticated")
    data_key: Secret | None = env(
        "SYNCSUITE_DATA_KEY", default=None,
        help="base64 of 32 random bytes sealing secrets stored at rest (shipping requires it)",
    )
    host: str = env("SYNCSUITE_HOST", default="127.0.0.1", help="address the servers bind")
    grpc_port: int | None = env(
        "SYNCSUITE_GRPC_PORT", default=None, help="unset = the service's default; 0 = any free port"
    )
    metrics_port: int | None = env(
        "SYNCSUITE_METRICS_PORT", default=None,
        help="unset = gRPC port + 1000 (any free port when gRPC has one); -1 = off",
    )
    db_pool_size: int = env("SYNCSUITE_DB_POOL_SIZE", default=10)
    shutdown_grace_seconds: float = env("SYNCSUITE_SHUTDOWN_GRACE", default=10.0)
    log_format: str = env("SYNCSUITE_LOG_FORMAT", default="auto", help="auto | json | console")
    log_level: str = env("SYNCSUITE_LOG_LEVEL", default="info")
