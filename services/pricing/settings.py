"""Pricing settings: StockX credentials and data source, regions, and the sync's limits."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import (
    Secret,
    env,
    non_negative,
    one_of,
    positive,
    positive_int,
    resolve_data_source,
)

__all__ = [
    "SANDBOX_API_KEY",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "SANDBOX_REFRESH_TOKEN",
    "STOCKX_CURRENCIES",
    "PricingSettings",
    "StockXConnection",
]

# Currencies StockX prices in (its `currencyCode` values).
STOCKX_CURRENCIES = frozenset(
    {"AUD", "CAD", "CHF", "EUR", "GBP", "HKD", "JPY", "KRW", "MXN", "NZD", "SGD", "USD"}
)

# The credentials our StockX sandbox accepts (documented in the README; not secrets).
SANDBOX_API_KEY = "sandbox-api-key"
SANDBOX_CLIENT_ID = "sandbox-client"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"
SANDBOX_REFRESH_TOKEN = "sandbox-refresh-token"
SANDBOX_DEFAULT_URL = "http://127.0.0.1:8092"


def _currencies(raw: str) -> list[str]:
    codes = [part.strip().upper() for part in raw.split(",") if part.strip()]
    unknown = [code for code in codes if code not in STOCKX_CURRENCIES]
    if unknown or not codes:
        raise ValueError(f"expected StockX currency codes, got {', '.join(unknown) or 'none'}")
    return list(dict.fromkeys(codes))


@dataclass(frozen=True)
class StockXConnection:
    """Where and as whom the client talks to StockX (real API or our sandbox)."""

    source: str  # "stockx" | "sandbox"
    base_url: str
    auth_url: str
    api_key: Secret
    client_id: str
    client_secret: Secret
    refresh_token: Secret
    audience: str


@dataclass(frozen=True)
class PricingSettings:
    data_source: str = env(
        "STOCKX_DATA_SOURCE", default="auto", parse=one_of("auto", "sandbox", "stockx"),
        help="stockx | sandbox | auto (stockx when credentials are set)",
    )
    api_key: Secret | None = env("STOCKX_API_KEY", default=None)
    client_id: str = env("STOCKX_CLIENT_ID", default="")
    client_secret: Secret | None = env("STOCKX_CLIENT_SECRET", default=None)
    refresh_token: Secret | None = env("STOCKX_REFRESH_TOKEN", default=None)
    base_url: str = env("STOCKX_BASE_URL", default="https://api.stockx.com/v2")
    auth_url: str = env("STOCKX_AUTH_URL", default="https://accounts.stockx.com/oauth/token")
    audience: str = env("STOCKX_AUDIENCE", default="gateway.stockx.com")
    sandbox_url: str = env("STOCKX_SANDBOX_URL", default=SANDBOX_DEFAULT_URL)
    rate_per_second: float = env("STOCKX_RATE_PER_SECOND", default=1.0, parse=positive,
                                 help="our pacing; StockX publishes 1 request/s")
    pacing_margin_ms: float = env("STOCKX_PACING_MARGIN_MS", default=5.0, parse=non_negative,
                                  help="added to each request interval against jitter")
    daily_limit: int = env("STOCKX_DAILY_LIMIT", default=25000, parse=positive_int)
    request_timeout_seconds: float = env("STOCKX_TIMEOUT_SECONDS", default=30.0, parse=positive)
    max_attempts: int = env("STOCKX_MAX_ATTEMPTS", default=4, parse=positive_int)
    token_refresh_margin_seconds: float = env("STOCKX_TOKEN_REFRESH_MARGIN_SECONDS",
                                              default=300.0, parse=non_negative)
    regions: list[str] = env("PRICING_REGIONS", default=["USD", "GBP", "EUR"], parse=_currencies)
    max_products_per_run: int = env("PRICING_MAX_PRODUCTS_PER_RUN", default=100,
                                   parse=positive_int)
    concurrency: int = env("PRICING_CONCURRENCY", default=10, parse=positive_int)
    staleness_hours: float = env("PRICING_STALENESS_HOURS", default=8.0, parse=non_negative)
    time_budget_seconds: float = env("PRICING_TIME_BUDGET_SECONDS", default=300.0,
                                      parse=positive)
    retention_days: float = env("PRICING_RETENTION_DAYS", default=90.0, parse=positive)
    popular_min_views: int = env("PRICING_POPULAR_MIN_VIEWS", default=3, parse=positive_int,
                                 help="views that make a product popular")

    def connection(self) -> StockXConnection:
        """The real API when chosen (or when ``auto`` finds credentials), else the sandbox."""
        configured = all((self.api_key, self.client_id, self.client_secret, self.refresh_token))
        source = resolve_data_source(
            self.data_source, real="stockx", configured=configured, variable="STOCKX_DATA_SOURCE",
            required="STOCKX_API_KEY, STOCKX_CLIENT_ID, STOCKX_CLIENT_SECRET and "
                     "STOCKX_REFRESH_TOKEN",
        )
        if source == "stockx":
            assert self.api_key and self.client_secret and self.refresh_token
            return StockXConnection(
                "stockx", self.base_url.rstrip("/"), self.auth_url, self.api_key,
                self.client_id, self.client_secret, self.refresh_token, self.audience,
            )
        root = self.sandbox_url.rstrip("/")
        return StockXConnection(
            "sandbox", f"{root}/v2", f"{root}/oauth/token", Secret(SANDBOX_API_KEY),
            SANDBOX_CLIENT_ID, Secret(SANDBOX_CLIENT_SECRET), Secret(SANDBOX_REFRESH_TOKEN),
            self.audience,
        )

