"""The catalog's settings, read once from the environment (see services/catalog/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.config import (
    ConfigError,
    Secret,
    env,
    one_of,
    positive,
    positive_int,
    resolve_data_source,
)

__all__ = ["SANDBOX_CREDENTIALS", "CatalogSettings", "NetSuiteCredentials", "resolve_upstream"]


@dataclass(frozen=True)
class NetSuiteCredentials:
    """Token-Based Authentication: an integration (consumer) and an access token."""

    account_id: str
    consumer_key: Secret
    consumer_secret: Secret
    token_id: Secret
    token_secret: Secret

    @property
    def realm(self) -> str:
        """The OAuth realm: the account id upper case with '-' as '_' (1234567_SB1)."""
        return self.account_id.replace("-", "_").upper()

    @property
    def host_account(self) -> str:
        """The account id as hosts spell it: lower case with '-' (1234567-sb1)."""
        return self.account_id.replace("_", "-").lower()


# The sandbox accepts these (and only these): they are not secret, they are documented.
SANDBOX_CREDENTIALS = NetSuiteCredentials(
    account_id="TSTDRV-SANDBOX",
    consumer_key=Secret("sandbox-consumer-key-0f3c9a"),
    consumer_secret=Secret("sandbox-consumer-secret-7d21e4"),
    token_id=Secret("sandbox-token-id-5b8a10"),
    token_secret=Secret("sandbox-token-secret-c94f3e"),
)


@dataclass(frozen=True)
class CatalogSettings:
    data_source: str = env(
        "NETSUITE_DATA_SOURCE", default="auto", parse=one_of("auto", "sandbox", "netsuite"),
        help="netsuite | sandbox | auto (netsuite when credentials are set)",
    )
    account_id: str | None = env("NETSUITE_ACCOUNT_ID", default=None)
    consumer_key: Secret | None = env("NETSUITE_CONSUMER_KEY", default=None)
    consumer_secret: Secret | None = env("NETSUITE_CONSUMER_SECRET", default=None)
    token_id: Secret | None = env("NETSUITE_TOKEN_ID", default=None)
    token_secret: Secret | None = env("NETSUITE_TOKEN_SECRET", default=None)
    rest_url: str | None = env(
        "NETSUITE_REST_URL", default=None,
        help="https://<account>.suitetalk.api.netsuite.com by default",
    )
    restlet_url: str | None = env(
        "NETSUITE_RESTLET_URL", default=None,
        help="full RESTlet URL (script and deploy); when set, records are fetched through it",
    )
    sandbox_url: str = env("NETSUITE_SANDBOX_URL", default="http://127.0.0.1:8091")
    account_timezone: str = env(
        "NETSUITE_TIMEZONE", default="America/Los_Angeles",
        help="time zone of the moments NetSuite sends without an offset",
    )
    page_size: int = env("NETSUITE_PAGE_SIZE", default=1000, parse=positive_int)
    concurrency: int = env("NETSUITE_CONCURRENCY", default=4, parse=positive_int)
    request_timeout_seconds: float = env("NETSUITE_TIMEOUT_SECONDS", default=60.0, parse=positive)
    max_attempts: int = env("NETSUITE_MAX_ATTEMPTS", default=5, parse=positive_int)
    lookback_seconds: float = env(
        "CATALOG_SYNC_LOOKBACK_SECONDS", default=26 * 3600.0, parse=positive,
        help="incremental syncs re-read this much before the cursor",
    )
    chunk_bytes: int = env("CATALOG_REDIS_CHUNK_BYTES", default=5_000_000, parse=positive_int)
    snapshot_ttl_seconds: int = env(
        "CATALOG_REDIS_TTL_SECONDS", default=7 * 24 * 3600, parse=positive_int
    )
    lease_seconds: float = env("CATALOG_FETCH_LEASE_SECONDS", default=120.0, parse=positive)
    version_poll_seconds: float = env(
        "CATALOG_VERSION_POLL_SECONDS", default=2.0, parse=positive
    )
    upstream_retry_seconds: float = env(
        "CATALOG_UPSTREAM_RETRY_SECONDS", default=30.0, parse=positive,
        help="after a failed fetch, how long a fallback tier answers before NetSuite is retried",
    )
    preload: bool = env("CATALOG_PRELOAD", default=True)
    kpi_cache_seconds: float = env(
        "CATALOG_KPI_CACHE_SECONDS", default=1.0,
        help="how long a replica reuses the KPI view's row (0 = read the view every time)",
    )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.account_timezone)

    def validate(self) -> None:
        try:
            ZoneInfo(self.account_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"NETSUITE_TIMEZONE={self.account_timezone!r} is not a time zone"
            ) from None


@dataclass(frozen=True)
class Upstream:
    """Which NetSuite the client talks to."""

    active: str  # "netsuite" | "sandbox"
    credentials: NetSuiteCredentials
    rest_url: str
    restlet_url: str | None
    credentials_configured: bool


def _configured_credentials(settings: CatalogSettings) -> NetSuiteCredentials | None:
    parts = (settings.account_id, settings.consumer_key, settings.consumer_secret,
             settings.token_id, settings.token_secret)
    if not all(parts):
        return None
    return NetSuiteCredentials(
        settings.account_id or "", settings.consumer_key or Secret(""),
        settings.consumer_secret or Secret(""), settings.token_id or Secret(""),
        settings.token_secret or Secret(""),
    )


def resolve_upstream(settings: CatalogSettings) -> Upstream:
    """netsuite when asked, or with ``auto`` when every credential is set; else the sandbox."""
    credentials = _configured_credentials(settings)
    active = resolve_data_source(
        settings.data_source, real="netsuite", configured=credentials is not None,
        variable="NETSUITE_DATA_SOURCE",
        required="NETSUITE_ACCOUNT_ID, NETSUITE_CONSUMER_KEY, NETSUITE_CONSUMER_SECRET,"
                 " NETSUITE_TOKEN_ID and NETSUITE_TOKEN_SECRET",
    )
    if credentials is not None and active == "netsuite":
        rest = settings.rest_url or f"https://{credentials.host_account}.suitetalk.api.netsuite.com"
        return Upstream("netsuite", credentials, rest.rstrip("/"), settings.restlet_url,
                        True)
    return Upstream("sandbox", SANDBOX_CREDENTIALS, settings.sandbox_url.rstrip("/"),
                    settings.restlet_url, credentials is not None)
