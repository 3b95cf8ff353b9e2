"""Our StockX sandbox: the v2 catalog and market-data API with StockX's auth, limits and errors.

    POST /oauth/token                                   refresh-token grant → access_token
    GET  /v2/catalog/search?query&pageNumber&pageSize   pageSize 1-50, default 1
    GET  /v2/catalog/products/{productId}
    GET  /v2/catalog/products/{productId}/variants
    GET  /v2/catalog/products/{productId}/market-data?currencyCode=
    GET  /v2/catalog/products/{productId}/variants/{variantId}/market-data?currencyCode=

Every /v2 request needs ``x-api-key`` (403 ``{"statusCode":403,"message":"Forbidden"}``
otherwise) and a live bearer token from /oauth/token (401 ``Unauthorized`` otherwise). Limits:
``rate`` requests per second after a burst (429 with Retry-After) and a daily quota, per API
key. Prices exist per currency and drift deterministically with the wall clock (one step per
``drift_seconds``); some amounts are null, as on StockX. Faults: ``shared.sandbox``'s
``/_sandbox/faults`` plus failing currencies (a region that answers 500), currencies answered
in USD (market data labelled and priced in USD whatever ``currencyCode`` asked) and token
revocation, driven over ``/_stockx/*`` or from Python.

Run: ``python -m services.pricing.sandbox --host 127.0.0.1 --port 8092`` (knobs in the README).
"""

from __future__ import annotations

import math
import os
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.pricing.settings import (
    SANDBOX_API_KEY,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REFRESH_TOKEN,
    STOCKX_CURRENCIES,
)
from shared.config import env, load
from shared.sandbox import (
    FaultInjector,
    FixedWindowLimit,
    RateLimitMiddleware,
    Rejection,
    TokenBucketLimit,
    header_key,
    product_name,
    rng_for,
    run_cli,
    stable_hash,
)

__all__ = ["SandboxConfig", "StockXSandbox", "build_sandbox", "main"]

Clock = Callable[[], float]

# Rough value of one unit of each currency in USD, for generated prices.
_USD_PER_UNIT = {
    "USD": 1.0, "GBP": 1.27, "EUR": 1.08, "AUD": 0.66, "CAD": 0.73, "CHF": 1.12, "HKD": 0.128,
    "JPY": 0.0067, "KRW": 0.00074, "MXN": 0.058, "NZD": 0.61, "SGD": 0.74,
}
_BRANDS = ("Nike", "Jordan", "adidas", "New Balance", "ASICS", "Yeezy", "Salomon", "Converse")
_SIZES = [f"{whole / 2:g}" for whole in range(7, 31)]  # 3.5 … 15


@dataclass(frozen=True)
class SandboxConfig:
    products: int = env("STOCKX_SANDBOX_PRODUCTS", default=500)
    variants: int = env("STOCKX_SANDBOX_VARIANTS", default=12,
                        help="variants (sizes) per product, at most; at least half of it")
    seed: int = env("STOCKX_SANDBOX_SEED", default=1)
    rate: float = env("STOCKX_SANDBOX_RATE", default=1.0, help="requests per second per key")
    burst: float = env("STOCKX_SANDBOX_BURST", default=1.0)
    daily_limit: int = env("STOCKX_SANDBOX_DAILY_LIMIT", default=25000)
    token_ttl: float = env("STOCKX_SANDBOX_TOKEN_TTL", default=3600.0, help="seconds")
    drift_seconds: float = env("STOCKX_SANDBOX_DRIFT_SECONDS", default=300.0)
    failing_currencies: list[str] = env("STOCKX_SANDBOX_FAILING_CURRENCIES", default=[])
    usd_currencies: list[str] = env(
        "STOCKX_SANDBOX_USD_CURRENCIES", default=[],
        help="regions whose market data comes back in USD (currencyCode USD)")
    api_key: str = SANDBOX_API_KEY
    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str = SANDBOX_CLIENT_SECRET
    refresh_token: str = SANDBOX_REFRESH_TOKEN


def _error(status: int, message: str) -> Response:
    """StockX's error body."""
    return JSONResponse({"statusCode": status, "message": message}, status_code=status)


def _reject(rejection: Rejection) -> Response:
    return _error(429, "Too Many Requests")


def _money(value: float) -> str:
    return str(Decimal(value).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class _Product:
    index: int
    product_id: str
    style_id: str
    title: str
    brand: str
    url_key: str
    variants: tuple[tuple[str, str], ...]  # (variant id, size)
    base_usd: float


@dataclass
class _Tokens:
    ttl: float
    clock: Clock
    live: dict[str, float] = field(default_factory=dict)  # token → expiry (monotonic)
    issued: int = 0

    def issue(self) -> str:
        token = "sbx." + secrets.token_urlsafe(24)
        self.live[token] = self.clock() + self.ttl
        self.issued += 1
        return token

    def valid(self, token: str) -> bool:
        expiry = self.live.get(token)
        if expiry is None:
            return False
        if self.clock() >= expiry:
            del self.live[token]
            return False
        return True


class StockXSandbox:
    """The sandbox's state (catalog, tokens, faults, limits) and its Starlette ``app``."""

    def __init__(
        self,
        config: SandboxConfig,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.config = config
        self.wall_clock = wall_clock
        self.tokens = _Tokens(config.token_ttl, clock)
        self.failing_currencies: set[str] = {c.upper() for c in config.failing_currencies}
        # asked for in these, market data answers in USD: a client must check currencyCode
        self.usd_currencies: set[str] = {c.upper() for c in config.usd_currencies}
        self.unauthorized = 0
        self.products = [self._product(index) for index in range(config.products)]
        self._by_id = {product.product_id: product for product in self.products}
        self.faults = FaultInjector(_error, extra_stats=self._stats)
        self.rate_limit = TokenBucketLimit(config.rate, config.burst, clock=clock)
        self.daily_limit = FixedWindowLimit(
            config.daily_limit, 86400.0, clock=wall_clock, header_prefix=None, aligned=True,
        )
        key = header_key("x-api-key")
        self.app = Starlette(
            routes=[
                Route("/oauth/token", self._token, methods=["POST"]),
                Route("/v2/catalog/search", self._search),
                Route("/v2/catalog/products/{product_id}", self._get_product),
                Route("/v2/catalog/products/{product_id}/variants", self._variants),
                Route("/v2/catalog/products/{product_id}/market-data", self._market_data),
                Route("/v2/catalog/products/{product_id}/variants/{variant_id}/market-data",
                      self._variant_market_data),
                Route("/_stockx/failing-currencies", self._set_failing, methods=["POST"]),
                Route("/_stockx/revoke-tokens", self._revoke, methods=["POST"]),
            ],
            middleware=[
                self.faults.middleware(),
                Middleware(RateLimitMiddleware, limit=self.rate_limit, reject=_reject, key=key,
                           path_prefix="/v2/"),
                Middleware(RateLimitMiddleware, limit=self.daily_limit, reject=_reject, key=key,
                           path_prefix="/v2/"),
            ],
        )

    # -- data

    def _product(self, index: int) -> _Product:
        seed = self.config.seed
        rng = rng_for(seed, "product", index)
        product_id = str(uuid.UUID(int=stable_hash(seed, "product-id", index) << 64
                                   | stable_hash(seed, "product-id-2", index)))
        brand = rng.choice(_BRANDS)
        title = f"{brand} {product_name(rng)}"
        letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(2))
        style_id = f"{letters}{rng.randint(1000, 9999)}-{rng.randint(0, 999):03d}"
        count = max(1, min(len(_SIZES), self.config.variants))
        count = rng.randint(max(1, (count + 1) // 2), count)
        start = rng.randint(0, len(_SIZES) - count)
        variants = tuple(
            (str(uuid.UUID(int=stable_hash(seed, "variant", index, size) << 64
                           | stable_hash(seed, "variant-2", index, size))), size)
            for size in _SIZES[start:start + count]
        )
        url_key = "-".join(title.lower().split())
        return _Product(index, product_id, style_id, title, brand, url_key, variants,
                        rng.uniform(90.0, 600.0))

    def product(self, product_id: str) -> _Product | None:
        return self._by_id.get(product_id)

    def price_step(self) -> int:
        return int(self.wall_clock() // self.config.drift_seconds)

    def market_row(self, product: _Product, position: int, currency: str) -> dict[str, Any]:
        """One variant's market data in ``currency`` at the current drift step."""
        variant_id, _size = product.variants[position]
        seed = self.config.seed
        step = self.price_step()
        shape = rng_for(seed, "variant-shape", product.index, position)
        region = rng_for(seed, "region", product.index, currency)
        premium = 1.0 + region.uniform(-0.12, 0.12)  # regional markets differ
        size_factor = 1.0 + shape.uniform(-0.15, 0.35)
        phase = shape.uniform(0.0, 2 * math.pi)
        drift = 1.0 + 0.06 * math.sin(step * 0.7 + phase) + 0.02 * math.sin(step * 2.3 + phase)
        ask_usd = product.base_usd * size_factor * premium * drift
        ask = ask_usd / _USD_PER_UNIT[currency]
        moment = rng_for(seed, "moment", product.index, position, currency, step)
        bid = ask * moment.uniform(0.75, 0.95)
        no_ask = shape.random() < 0.04
        no_bid = moment.random() < 0.08
        return {
            "productId": product.product_id,
            "variantId": variant_id,
            "currencyCode": currency,
            "lowestAskAmount": None if no_ask else _money(ask),
            "highestBidAmount": None if no_bid else _money(bid),
            "sellFasterAmount": None if no_ask else _money(ask * 0.98),
            "earnMoreAmount": None if no_ask else _money(ask * 1.03),
            "flexLowestAskAmount": None if no_ask else _money(ask * 1.01),
        }

    # -- auth

    def _check_auth(self, request: Request) -> Response | None:
        if request.headers.get("x-api-key") != self.config.api_key:
            return _error(403, "Forbidden")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self.tokens.valid(token.strip()):
            self.unauthorized += 1
            return _error(401, "Unauthorized")
        return None

    async def _token(self, request: Request) -> Response:
        # application/x-www-form-urlencoded, parsed here (no python-multipart dependency)
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("latin-1")).items()}
        config = self.config
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type",
                                 "error_description": "Unsupported grant type"}, status_code=400)
        if form.get("client_id") != config.client_id or (
                form.get("client_secret") != config.client_secret):
            return JSONResponse({"error": "access_denied", "error_description": "Unauthorized"},
                                status_code=401)
        if form.get("refresh_token") != config.refresh_token:
            return JSONResponse({"error": "invalid_grant",
                                 "error_description": "Unknown or invalid refresh token."},
                                status_code=403)
        if form.get("audience") != "gateway.stockx.com":
            return JSONResponse({"error": "access_denied",
                                 "error_description": "Service not found"}, status_code=403)
        return JSONResponse({
            "access_token": self.tokens.issue(), "token_type": "Bearer",
            "expires_in": int(config.token_ttl), "scope": "offline_access openid",
        })

    def revoke_tokens(self) -> None:
        """Every issued access token stops working (the client must refresh on 401)."""
        self.tokens.live.clear()

    # -- routes

    def _find(self, request: Request) -> tuple[_Product | None, Response | None]:
        denied = self._check_auth(request)
        if denied is not None:
            return None, denied
        product = self.product(request.path_params["product_id"])
        if product is None:
            return None, _error(404, "Product not found")
        return product, None

    def _currency(self, request: Request) -> tuple[str, Response | None]:
        currency = request.query_params.get("currencyCode", "USD").upper()
        if currency not in STOCKX_CURRENCIES:
            return currency, _error(400, f"Invalid currencyCode: {currency}")
        if currency in self.failing_currencies:
            return currency, _error(500, "Internal server error")
        return currency, None

    async def _search(self, request: Request) -> Response:
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        try:
            page_number = int(request.query_params.get("pageNumber", "1"))
            page_size = int(request.query_params.get("pageSize", "1"))
        except ValueError:
            return _error(400, "pageNumber and pageSize must be integers")
        if not 1 <= page_size <= 50 or page_number < 1:
            return _error(400, "pageSize must be between 1 and 50, pageNumber at least 1")
        query = request.query_params.get("query", "").strip().lower()
        if not query:
            return _error(400, "query is required")
        found = [p for p in self.products
                 if query in p.title.lower() or query in p.style_id.lower()]
        start = (page_number - 1) * page_size
        page = found[start:start + page_size]
        return JSONResponse({
            "count": len(found), "pageSize": page_size, "pageNumber": page_number,
            "hasNextPage": start + page_size < len(found),
            "products": [self._product_json(p) for p in page],
        })

    @staticmethod
    def _product_json(product: _Product) -> dict[str, Any]:
        return {
            "productId": product.product_id, "urlKey": product.url_key,
            "styleId": product.style_id, "productType": "sneakers", "title": product.title,
            "brand": product.brand, "productAttributes": {"gender": "men", "season": None},
        }

    async def _get_product(self, request: Request) -> Response:
        product, denied = self._find(request)
        if denied is not None or product is None:
            return denied or _error(404, "Product not found")
        return JSONResponse(self._product_json(product))

    async def _variants(self, request: Request) -> Response:
        product, denied = self._find(request)
        if denied is not None or product is None:
            return denied or _error(404, "Product not found")
        return JSONResponse([
            {"productId": product.product_id, "variantId": variant_id,
             "variantName": f"{product.url_key}:{size}", "variantValue": size, "gtins": []}
            for variant_id, size in product.variants
        ])

    def _market_request(self, request: Request) -> tuple[_Product, str] | Response:
        """The product and currency a market-data request names, or the error answer."""
        product, denied = self._find(request)
        if denied is not None or product is None:
            return denied or _error(404, "Product not found")
        currency, bad = self._currency(request)
        if bad is not None:
            return bad
        return product, "USD" if currency in self.usd_currencies else currency

    async def _market_data(self, request: Request) -> Response:
        asked = self._market_request(request)
        if isinstance(asked, Response):
            return asked
        product, currency = asked
        return JSONResponse([self.market_row(product, position, currency)
                             for position in range(len(product.variants))])

    async def _variant_market_data(self, request: Request) -> Response:
        asked = self._market_request(request)
        if isinstance(asked, Response):
            return asked
        product, currency = asked
        wanted = request.path_params["variant_id"]
        for position, (variant_id, _size) in enumerate(product.variants):
            if variant_id == wanted:
                return JSONResponse(self.market_row(product, position, currency))
        return _error(400, "Variant does not belong to the product")

    async def _set_failing(self, request: Request) -> Response:
        body = await request.json()
        codes = body.get("currencies") if isinstance(body, dict) else None
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            return JSONResponse({"error": 'expected {"currencies": ["GBP", ...]}'},
                                status_code=400)
        self.failing_currencies = {c.upper() for c in codes}
        return JSONResponse({"failing_currencies": sorted(self.failing_currencies)})

    async def _revoke(self, request: Request) -> Response:
        self.revoke_tokens()
        return JSONResponse({"revoked": True})

    def _stats(self) -> Mapping[str, Any]:
        return {
            "tokens_issued": self.tokens.issued, "unauthorized": self.unauthorized,
            "rate_limit": self.rate_limit.stats(), "daily_limit": self.daily_limit.stats(),
            "failing_currencies": sorted(self.failing_currencies),
            "usd_currencies": sorted(self.usd_currencies),
        }


def build_sandbox(environ: Mapping[str, str] | None = None, **overrides: Any) -> StockXSandbox:
    """A sandbox configured from ``STOCKX_SANDBOX_*`` variables (and ``overrides``)."""
    clock = overrides.pop("clock", time.monotonic)
    wall_clock = overrides.pop("wall_clock", time.time)
    config = load(SandboxConfig, os.environ if environ is None else environ, **overrides)
    return StockXSandbox(config, clock=clock, wall_clock=wall_clock)


def main(argv: list[str] | None = None) -> None:
    run_cli("StockX", 8092, lambda: build_sandbox().app, argv)


if __name__ == "__main__":
    main()
