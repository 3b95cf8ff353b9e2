"""The StockX public API v2 client (the same code runs against StockX and our sandbox).

    StockXClient              catalog search / product / variants / market data
    ├── UpstreamClient        shared.upstream: retries (429 Retry-After, 5xx), TokenBucket pacing
    ├── DailyQuotaLimiter     the published 25,000 requests per day (reset 00:00 UTC) + pacing
    └── StockXTokens          OAuth2 bearer from the refresh-token grant, renewed before it
                              expires and once more when the API answers 401

Every request carries ``x-api-key`` and ``Authorization: Bearer <token>``. Amounts arrive as
strings or null and become :class:`~decimal.Decimal` or None. Credentials StockX refuses raise
an ``UpstreamAuthError`` saying which were refused (never their values); such an error, and a
pause StockX asks for that is longer than we wait, are *lasting*
(:meth:`StockXClient.lasting_failure`): every further call would fail the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from services.pricing.settings import PricingSettings, StockXConnection
from shared.oauth import AccessToken, RefreshingToken
from shared.upstream import (
    PausedTooLong,
    RateLimitInfo,
    RetryPolicy,
    TokenBucket,
    UpstreamAuthError,
    UpstreamClient,
    UpstreamUnavailable,
    create_http_client,
)

__all__ = [
    "CatalogProduct",
    "DailyQuotaLimiter",
    "MarketData",
    "SearchPage",
    "StockXClient",
    "StockXTokens",
    "Variant",
    "create_stockx_client",
    "parse_amount",
]

log = structlog.get_logger("stockx")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
UPSTREAM = "stockx"
# How long a refused refresh-token grant is answered from memory: the callers waiting for a
# token (one per product in flight) get the refusal without asking the token endpoint again.
GRANT_REFUSAL_HOLD_SECONDS = 60.0


def parse_amount(value: Any) -> Decimal | None:
    """A StockX amount ("189", "189.50", 189, null) as a Decimal, None when absent or bad."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


@dataclass(frozen=True, slots=True)
class MarketData:
    product_id: str
    variant_id: str
    currency_code: str
    lowest_ask: Decimal | None
    highest_bid: Decimal | None
    sell_faster: Decimal | None = None
    earn_more: Decimal | None = None
    flex_lowest_ask: Decimal | None = None
    last_sale: Decimal | None = None  # not in StockX v2's documented fields; kept if present

    @classmethod
    def from_json(cls, data: dict[str, Any], currency: str) -> MarketData:
        return cls(
            product_id=str(data.get("productId") or ""),
            variant_id=str(data.get("variantId") or ""),
            currency_code=str(data.get("currencyCode") or currency).upper(),
            lowest_ask=parse_amount(data.get("lowestAskAmount")),
            highest_bid=parse_amount(data.get("highestBidAmount")),
            sell_faster=parse_amount(data.get("sellFasterAmount")),
            earn_more=parse_amount(data.get("earnMoreAmount")),
            flex_lowest_ask=parse_amount(data.get("flexLowestAskAmount")),
            last_sale=parse_amount(data.get("lastSaleAmount")),
        )


@dataclass(frozen=True, slots=True)
class Variant:
    product_id: str
    variant_id: str
    variant_name: str
    variant_value: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Variant:
        return cls(
            product_id=str(data.get("productId") or ""),
            variant_id=str(data.get("variantId") or ""),
            variant_name=str(data.get("variantName") or ""),
            variant_value=str(data.get("variantValue") or ""),
        )


@dataclass(frozen=True, slots=True)
class CatalogProduct:
    product_id: str
    style_id: str
    title: str
    brand: str
    url_key: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CatalogProduct:
        return cls(
            product_id=str(data.get("productId") or ""),
            style_id=str(data.get("styleId") or ""),
            title=str(data.get("title") or ""),
            brand=str(data.get("brand") or ""),
            url_key=str(data.get("urlKey") or ""),
        )


@dataclass(frozen=True, slots=True)
class SearchPage:
    count: int
    page_number: int
    page_size: int
    has_next_page: bool
    products: list[CatalogProduct]


class DailyQuotaLimiter:
    """A daily request quota (reset at 00:00 UTC) in front of a :class:`TokenBucket`.

    When the day's quota is spent the call fails at once (waiting for midnight is not useful
    inside a sync run); the run records it and goes on.
    """

    def __init__(
        self, bucket: TokenBucket, daily_limit: int, *, wall_clock: Clock = time.time
    ) -> None:
        self.bucket = bucket
        self.daily_limit = daily_limit
        self._wall_clock = wall_clock
        self._day = ""
        self.used_today = 0

    async def acquire(self) -> None:
        day = datetime.fromtimestamp(self._wall_clock(), UTC).date().isoformat()
        if day != self._day:
            self._day, self.used_today = day, 0
        if self.used_today >= self.daily_limit:
            raise UpstreamUnavailable(
                UPSTREAM, f"the daily quota of {self.daily_limit} requests is spent"
            )
        self.used_today += 1
        await self.bucket.acquire()

    def complete(self, info: RateLimitInfo | None) -> None:
        self.bucket.complete(info)


def credentials_refused(which: str, error: UpstreamAuthError) -> UpstreamAuthError:
    """``error`` (a 401/403) restated to say which of our credentials StockX refused."""
    return UpstreamAuthError(UPSTREAM, f"StockX refused our credentials ({which}): "
                                       f"{error.message}", error.status, code=error.code)


class StockXTokens(RefreshingToken):
    """The OAuth2 access token: the refresh-token grant at ``auth_url`` (with StockX's
    ``audience``); a rotated refresh token, when StockX returns one, is kept. A refused grant
    is remembered for ``GRANT_REFUSAL_HOLD_SECONDS``."""

    def __init__(
        self,
        http: UpstreamClient,
        connection: StockXConnection,
        *,
        margin_seconds: float = 300.0,
        default_lifetime: float = 3600.0,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(margin_seconds=margin_seconds, clock=clock)
        self._http = http
        self._connection = connection
        self._refresh_token = connection.refresh_token
        self._default_lifetime = default_lifetime
        self._refused: UpstreamAuthError | None = None
        self._refused_until = 0.0

    async def grant(self) -> AccessToken:
        if self._refused is not None and self._clock() < self._refused_until:
            raise self._refused
        connection = self._connection
        form = {
            "grant_type": "refresh_token",
            "client_id": connection.client_id,
            "client_secret": connection.client_secret.reveal(),
            "audience": connection.audience,
            "refresh_token": self._refresh_token.reveal(),
        }
        try:
            response = await self._http.request("POST", connection.auth_url, data=form)
        except UpstreamAuthError as error:
            self._refused = credentials_refused(
                "client id, client secret or refresh token at the token endpoint", error)
            self._refused_until = self._clock() + GRANT_REFUSAL_HOLD_SECONDS
            log.warning("stockx_grant_refused", status=error.status, code=error.code)
            raise self._refused from None
        try:
            body = response.json()
            token = str(body["access_token"])
        except (ValueError, KeyError, TypeError):
            raise UpstreamUnavailable(UPSTREAM, "the token endpoint answered no access_token",
                                      response.status_code) from None
        lifetime = float(body.get("expires_in") or self._default_lifetime)
        if body.get("refresh_token"):  # rotated
            self._refresh_token = type(self._refresh_token)(str(body["refresh_token"]))
        log.info("stockx_token_refreshed", lifetime_s=lifetime, refreshes=self.refreshes + 1)
        return AccessToken(token, lifetime)


class StockXClient:
    """StockX v2 calls. Raises ``shared.upstream`` errors (UpstreamError subclasses)."""

    def __init__(self, api: UpstreamClient, tokens: StockXTokens, auth_http: UpstreamClient):
        self.api = api
        self.tokens = tokens
        self._auth_http = auth_http

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        token = await self.tokens.get()
        try:
            return await self.api.get_json(path, params=params, headers=_bearer(token))
        except UpstreamAuthError as error:
            if error.status != 401:  # StockX answers 403 to a missing or wrong x-api-key
                raise credentials_refused("the API key", error) from None
            self.tokens.invalidate(token)
            log.info("stockx_token_refused", path=path)
        token = await self.tokens.get()
        try:
            return await self.api.get_json(path, params=params, headers=_bearer(token))
        except UpstreamAuthError as error:
            raise credentials_refused("an access token just granted", error) from None

    def lasting_failure(self, error: BaseException) -> bool:
        """Whether every further call would fail as the one that raised ``error`` did, for
        longer than we wait: credentials refused, or a pause asked for (Retry-After) longer
        than the retry policy's ``max_retry_after`` or past the caller's pause deadline."""
        if isinstance(error, UpstreamAuthError | PausedTooLong):
            return True
        return (isinstance(error, UpstreamUnavailable) and error.retry_after is not None
                and error.retry_after > self.api.retry.max_retry_after)

    async def market_data(self, product_id: str, currency: str) -> list[MarketData]:
        """Market data of every variant of a product in one currency."""
        body = await self._get(f"catalog/products/{quote(product_id, safe='')}/market-data",
                               {"currencyCode": currency})
        if not isinstance(body, list):
            raise UpstreamUnavailable(UPSTREAM, "market data is not a list")
        return [MarketData.from_json(item, currency) for item in body if isinstance(item, dict)]

    async def variant_market_data(
        self, product_id: str, variant_id: str, currency: str
    ) -> MarketData:
        body = await self._get(
            f"catalog/products/{quote(product_id, safe='')}/variants/"
            f"{quote(variant_id, safe='')}/market-data",
            {"currencyCode": currency},
        )
        if not isinstance(body, dict):
            raise UpstreamUnavailable(UPSTREAM, "variant market data is not an object")
        return MarketData.from_json(body, currency)

    async def product(self, product_id: str) -> CatalogProduct:
        body = await self._get(f"catalog/products/{quote(product_id, safe='')}")
        if not isinstance(body, dict):
            raise UpstreamUnavailable(UPSTREAM, "product is not an object")
        return CatalogProduct.from_json(body)

    async def variants(self, product_id: str) -> list[Variant]:
        body = await self._get(f"catalog/products/{quote(product_id, safe='')}/variants")
        if not isinstance(body, list):
            raise UpstreamUnavailable(UPSTREAM, "variants are not a list")
        return [Variant.from_json(item) for item in body if isinstance(item, dict)]

    async def search(self, query: str, page_number: int = 1, page_size: int = 50) -> SearchPage:
        """One page of catalog search (StockX's pageSize is 1-50 and defaults to 1)."""
        body = await self._get("catalog/search", {
            "query": query, "pageNumber": page_number, "pageSize": page_size,
        })
        if not isinstance(body, dict):
            raise UpstreamUnavailable(UPSTREAM, "search result is not an object")
        return SearchPage(
            count=int(body.get("count") or 0),
            page_number=int(body.get("pageNumber") or page_number),
            page_size=int(body.get("pageSize") or page_size),
            has_next_page=bool(body.get("hasNextPage")),
            products=[CatalogProduct.from_json(p) for p in body.get("products") or []
                      if isinstance(p, dict)],
        )

    async def aclose(self) -> None:
        await self.api.aclose()
        await self._auth_http.aclose()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def create_stockx_client(
    connection: StockXConnection,
    settings: PricingSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    retry: RetryPolicy | None = None,
) -> StockXClient:
    """A client paced at ``settings.rate_per_second`` with ``pacing_margin_ms`` added to every
    interval, so that jitter between our send and the API's receive never makes two requests
    arrive closer than the published limit (which would cost a 429 and its Retry-After)."""
    headers = {"x-api-key": connection.api_key.reveal(), "accept": "application/json"}
    api_http = create_http_client(
        connection.base_url + "/", timeout=settings.request_timeout_seconds, headers=headers,
        transport=transport,
    )
    interval = 1.0 / settings.rate_per_second + settings.pacing_margin_ms / 1000.0
    retry = retry or RetryPolicy(max_attempts=settings.max_attempts, base_delay=0.5,
                                 max_delay=30.0)
    # A pause StockX asks for that is longer than a retry would wait fails the calls at once
    # (the run then stops) instead of holding every caller in the queue.
    bucket = TokenBucket(1.0 / interval, 1.0, clock=clock, sleep=sleep,
                         max_pause=retry.max_retry_after, upstream=UPSTREAM)
    api = UpstreamClient(
        UPSTREAM, api_http, DailyQuotaLimiter(bucket, settings.daily_limit), retry,
        attempt_timeout=settings.request_timeout_seconds, clock=clock, sleep=sleep,
    )
    auth_http = create_http_client(
        connection.auth_url, timeout=settings.request_timeout_seconds, transport=transport,
    )
    auth = UpstreamClient(
        f"{UPSTREAM}-auth", auth_http, None, RetryPolicy(max_attempts=3, base_delay=0.5),
        attempt_timeout=settings.request_timeout_seconds, clock=clock, sleep=sleep,
    )
    tokens = StockXTokens(auth, connection, margin_seconds=settings.token_refresh_margin_seconds,
                          clock=clock)
    return StockXClient(api, tokens, auth)
