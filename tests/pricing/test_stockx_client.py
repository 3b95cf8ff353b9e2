"""The StockX client against the in-process sandbox: auth, token refresh, limits, amounts."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from services.pricing.sandbox import StockXSandbox, build_sandbox
from services.pricing.settings import StockXConnection
from services.pricing.stockx import StockXClient, parse_amount
from shared.config import Secret
from shared.sandbox import ManualClock, asgi_client
from shared.upstream import RetryPolicy, UpstreamAuthError, UpstreamUnavailable
from tests.pricing.conftest import settings_for

MakeClient = Callable[..., StockXClient]


@pytest.mark.parametrize(("raw", "expected"), [
    ("189.50", Decimal("189.50")), ("200", Decimal(200)), (None, None), ("", None),
    ("n/a", None), (150, Decimal(150)), ("NaN", None), (True, None),
])
def test_amounts_are_strings_or_null(raw: object, expected: Decimal | None) -> None:
    assert parse_amount(raw) == expected


async def test_market_data_per_variant_and_currency(
        sandbox: StockXSandbox, make_client: MakeClient) -> None:
    client = make_client(sandbox)
    product = sandbox.products[0]
    usd = await client.market_data(product.product_id, "USD")
    gbp = await client.market_data(product.product_id, "GBP")
    assert [row.variant_id for row in usd] == [vid for vid, _ in product.variants]
    assert {row.currency_code for row in gbp} == {"GBP"}
    assert usd[0].lowest_ask != gbp[0].lowest_ask or usd[0].lowest_ask is None
    one = await client.variant_market_data(product.product_id, usd[1].variant_id, "EUR")
    assert (one.variant_id, one.currency_code) == (usd[1].variant_id, "EUR")
    variants = await client.variants(product.product_id)
    assert [v.variant_value for v in variants] == [size for _, size in product.variants]


async def test_prices_drift_deterministically_with_time() -> None:
    moments = iter([1_000_000.0, 1_000_000.0, 1_000_000.0 + 3600])
    sandbox = build_sandbox({}, products=3, seed=9, wall_clock=lambda: next(moments))
    product = sandbox.products[1]
    first = sandbox.market_row(product, 0, "USD")
    again = sandbox.market_row(product, 0, "USD")
    later = sandbox.market_row(product, 0, "USD")
    assert first == again
    assert first["lowestAskAmount"] != later["lowestAskAmount"]
    twin = build_sandbox({}, products=3, seed=9).products[1]
    assert twin.product_id == product.product_id and twin.variants == product.variants


async def test_catalog_search_pages_with_stockx_default_page_size(
        sandbox: StockXSandbox, make_client: MakeClient) -> None:
    client = make_client(sandbox)
    http = asgi_client(sandbox.app)
    token = await client.tokens.get()
    raw = await http.get("/v2/catalog/search", params={"query": "a"},
                         headers={"x-api-key": "sandbox-api-key",
                                  "authorization": f"Bearer {token}"})
    assert raw.json()["pageSize"] == 1 and len(raw.json()["products"]) == 1
    await http.aclose()
    first = await client.search("a", 1, 10)
    second = await client.search("a", 2, 10)
    assert first.has_next_page and len(first.products) == 10
    assert not {p.product_id for p in first.products} & {p.product_id for p in second.products}


async def test_missing_api_key_and_bad_token_get_stockx_bodies(sandbox: StockXSandbox) -> None:
    http = asgi_client(sandbox.app)
    path = f"/v2/catalog/products/{sandbox.products[0].product_id}"
    no_key = await http.get(path, headers={"authorization": "Bearer x"})
    assert no_key.status_code == 403
    assert no_key.json() == {"statusCode": 403, "message": "Forbidden"}
    bad_token = await http.get(path, headers={"x-api-key": "sandbox-api-key",
                                              "authorization": "Bearer nope"})
    assert bad_token.status_code == 401
    assert bad_token.json() == {"statusCode": 401, "message": "Unauthorized"}
    await http.aclose()


async def test_token_refresh_on_401(sandbox: StockXSandbox, make_client: MakeClient) -> None:
    client = make_client(sandbox)
    product_id = sandbox.products[0].product_id
    await client.market_data(product_id, "USD")
    assert client.tokens.refreshes == 1
    sandbox.revoke_tokens()  # the API now refuses the token we hold
    rows = await client.market_data(product_id, "USD")
    assert rows and client.tokens.refreshes == 2
    assert sandbox.unauthorized == 1


async def test_token_refreshed_before_it_expires(make_client: MakeClient) -> None:
    clock = ManualClock()
    sandbox = build_sandbox({}, products=2, rate=1000.0, token_ttl=600.0, clock=clock)
    client = make_client(sandbox, settings_for(STOCKX_TOKEN_REFRESH_MARGIN_SECONDS="60"),
                         clock=clock, sleep=clock.sleep)
    product_id = sandbox.products[0].product_id
    await client.market_data(product_id, "USD")
    clock.advance(500)  # 100 s left: still used
    await client.market_data(product_id, "USD")
    assert client.tokens.refreshes == 1
    clock.advance(50)  # 50 s left, under the 60 s margin: refreshed before use
    await client.market_data(product_id, "USD")
    assert client.tokens.refreshes == 2 and sandbox.unauthorized == 0


async def test_wrong_client_secret_fails_without_leaking_it(sandbox: StockXSandbox,
                                                            make_client: MakeClient) -> None:
    client = make_client(sandbox)
    connection = client.tokens._connection
    client.tokens._connection = StockXConnection(
        connection.source, connection.base_url, connection.auth_url, connection.api_key,
        connection.client_id, Secret("wrong-secret-value"), connection.refresh_token,
        connection.audience)
    with pytest.raises(UpstreamAuthError) as raised:
        await client.market_data(sandbox.products[0].product_id, "USD")
    assert raised.value.status == 401
    assert "wrong-secret-value" not in str(raised.value)


async def test_429_retry_after_is_honoured(make_client: MakeClient) -> None:
    clock = ManualClock()
    sandbox = build_sandbox({}, products=2, rate=1000.0, burst=100.0)
    client = make_client(sandbox, clock=clock, sleep=clock.sleep,
                         retry=RetryPolicy(max_attempts=3, base_delay=0.001))
    product_id = sandbox.products[0].product_id
    await client.tokens.get()
    sandbox.faults.force("status", status=429, retry_after=7, count=1, path_prefix="/v2/")
    before = clock.now
    rows = await client.market_data(product_id, "USD")
    assert rows
    assert client.api.stats.throttled == 1
    assert any(s >= 7 for s in clock.sleeps)  # waited as asked, on the injected clock
    assert clock.now - before >= 7
    # the bucket holds the next request too until the pause is over
    assert client.api.limiter.bucket.paused_until >= before + 7  # type: ignore[attr-defined]


async def test_sandbox_enforces_its_rate_limit_with_429(make_client: MakeClient) -> None:
    clock = ManualClock()
    sandbox = build_sandbox({}, products=2, rate=1.0, burst=1.0, clock=clock)
    http = asgi_client(sandbox.app)
    headers = {"x-api-key": "sandbox-api-key", "authorization": "Bearer x"}
    path = f"/v2/catalog/products/{sandbox.products[0].product_id}"
    assert (await http.get(path, headers=headers)).status_code == 401  # admitted, bad token
    limited = await http.get(path, headers=headers)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert limited.json() == {"statusCode": 429, "message": "Too Many Requests"}
    clock.advance(1.0)
    assert (await http.get(path, headers=headers)).status_code == 401
    await http.aclose()


async def test_client_paces_requests_at_the_published_rate(make_client: MakeClient) -> None:
    clock = ManualClock()
    sandbox = build_sandbox({}, products=2, rate=1.0, burst=1.0, clock=clock)
    client = make_client(sandbox, settings_for(STOCKX_RATE_PER_SECOND="1"), clock=clock,
                         sleep=clock.sleep)
    product_id = sandbox.products[0].product_id
    start = clock.now
    for currency in ("USD", "GBP", "EUR", "USD"):
        await client.market_data(product_id, currency)
    assert client.api.stats.throttled == 0 and sandbox.rate_limit.rejected == 0
    assert clock.now - start >= 3.0  # four requests at 1/s: three full intervals


async def test_failing_currency_answers_500(sandbox: StockXSandbox,
                                            make_client: MakeClient) -> None:
    client = make_client(sandbox)
    sandbox.failing_currencies = {"GBP"}
    product_id = sandbox.products[0].product_id
    with pytest.raises(UpstreamUnavailable):
        await client.market_data(product_id, "GBP")
    assert await client.market_data(product_id, "EUR")
