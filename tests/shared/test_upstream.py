"""shared.upstream against real HTTP: tiny Starlette vendors, in-process and over TCP.

Time is a ManualClock wherever the code under test waits, so nothing here sleeps for long.
"""

from __future__ import annotations

import asyncio
import random
from email.utils import formatdate

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from structlog.testing import capture_logs

from shared.errors import UpstreamError
from shared.sandbox import (
    ConcurrencyLimit,
    FaultInjector,
    FaultPlan,
    FixedWindowLimit,
    ManualClock,
    RateLimitMiddleware,
    Rejection,
    SandboxServer,
    asgi_client,
    bind_socket,
)
from shared.upstream import (
    AttemptRecord,
    RateLimitInfo,
    RetryPolicy,
    TokenBucket,
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamClient,
    UpstreamHttpError,
    UpstreamUnavailable,
    WindowLimiter,
    create_http_client,
    error_summary,
    parse_retry_after,
    redact_headers,
    redact_url,
)
from shared.upstream.limits import PausedTooLong, pause_deadline

pytestmark = pytest.mark.timeout(20)

ITEMS = {"items": [1, 2, 3]}


class Vendor:
    """A tiny vendor API: ``/items`` answers from a script, then 200 with ITEMS."""

    def __init__(self, *script: Response) -> None:
        self.script = list(script)
        self.calls = 0

    async def items(self, request: Request) -> Response:
        self.calls += 1
        return self.script.pop(0) if self.script else JSONResponse(ITEMS)

    def app(self, *middleware: Middleware) -> Starlette:
        return Starlette(
            routes=[Route("/items", self.items, methods=["GET", "POST"])],
            middleware=list(middleware),
        )


def client_for(
    app: Starlette,
    clock: ManualClock,
    *,
    limiter: TokenBucket | WindowLimiter | None = None,
    retry: RetryPolicy | None = None,
    http: httpx.AsyncClient | None = None,
    **kwargs: object,
) -> UpstreamClient:
    return UpstreamClient(
        "vendor",
        http or asgi_client(app),
        limiter,
        retry or RetryPolicy(rng=random.Random(7)),
        clock=clock,
        sleep=clock.sleep,
        **kwargs,  # type: ignore[arg-type]
    )


def netsuite_error(status: int, code: str, detail: str) -> JSONResponse:
    body = {
        "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
        "title": "Error",
        "status": status,
        "o:errorDetails": [{"detail": detail, "o:errorCode": code}],
    }
    return JSONResponse(body, status_code=status)


# --------------------------------------------------------------------------- retries


async def test_retries_server_errors_then_succeeds() -> None:
    vendor = Vendor(JSONResponse({"message": "boom"}, 500), Response("bad gateway", 502))
    clock = ManualClock()
    async with client_for(vendor.app(), clock) as client:
        assert await client.get_json("/items") == ITEMS
    assert vendor.calls == 3
    assert (client.stats.requests, client.stats.retries, client.stats.failures) == (3, 2, 0)
    assert 0 <= clock.sleeps[0] <= 0.2 and 0 <= clock.sleeps[1] <= 0.4  # full jitter caps


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_retry_after_is_honoured_and_pauses_the_limiter(form: str) -> None:
    wall = 1_700_000_000.0
    value = "7" if form == "seconds" else formatdate(wall + 7, usegmt=True)
    vendor = Vendor(JSONResponse({"message": "slow down"}, 429, headers={"Retry-After": value}))
    clock = ManualClock()
    bucket = TokenBucket(100.0, 10.0, clock=clock, sleep=clock.sleep)
    start = clock()
    async with client_for(vendor.app(), clock, limiter=bucket, wall_clock=lambda: wall) as client:
        assert await client.get_json("/items") == ITEMS
    assert bucket.paused_until == pytest.approx(start + 7)
    assert clock.sleeps[0] >= 7
    assert clock() - start == pytest.approx(7, abs=0.05)
    assert (client.stats.throttled, client.stats.retries) == (1, 1)


async def test_retry_after_beyond_the_cap_fails_fast() -> None:
    vendor = Vendor(JSONResponse({"message": "daily quota"}, 429, headers={"Retry-After": "3600"}))
    clock = ManualClock()
    retry = RetryPolicy(max_retry_after=60.0)
    async with client_for(vendor.app(), clock, retry=retry) as client:
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.get_json("/items")
    assert caught.value.retry_after == 3600 and caught.value.status == 429
    assert vendor.calls == 1 and clock.sleeps == []


async def test_retry_if_makes_a_netsuite_400_retryable() -> None:
    def limit_exceeded() -> JSONResponse:
        body = {"error": {"code": "SSS_REQUEST_LIMIT_EXCEEDED", "message": "Too many requests"}}
        return JSONResponse(body, 400)

    def is_limit(response: httpx.Response) -> bool:
        return response.status_code == 400 and "SSS_REQUEST_LIMIT_EXCEEDED" in response.text

    vendor = Vendor(limit_exceeded(), limit_exceeded())
    clock = ManualClock()
    async with client_for(vendor.app(), clock, retry=RetryPolicy(retry_if=is_limit)) as client:
        assert await client.post_json("/items", {"q": "SELECT id FROM customer"}) == ITEMS
    assert vendor.calls == 3 and client.stats.retries == 2


async def test_non_retryable_400_raises_http_error_with_status_and_code() -> None:
    vendor = Vendor(netsuite_error(400, "INVALID_PARAMETER", "Invalid query: limit 5000"))
    async with client_for(vendor.app(), ManualClock()) as client:
        with pytest.raises(UpstreamHttpError) as caught:
            await client.get_json("/items")
    error = caught.value
    assert isinstance(error, UpstreamError) and not isinstance(error, UpstreamAuthError)
    assert (error.status, error.code, error.upstream) == (400, "INVALID_PARAMETER", "vendor")
    assert "Invalid query" in error.message
    assert vendor.calls == 1 and client.stats.failures == 1


async def test_401_raises_auth_error_without_retrying() -> None:
    vendor = Vendor(netsuite_error(401, "INVALID_LOGIN", "Invalid login attempt."))
    async with client_for(vendor.app(), ManualClock()) as client:
        with pytest.raises(UpstreamAuthError) as caught:
            await client.get_json("/items")
    assert caught.value.status == 401 and caught.value.code == "INVALID_LOGIN"
    assert "INVALID_LOGIN" in caught.value.message
    assert vendor.calls == 1


async def test_timeouts_are_retried_then_raise_unavailable() -> None:
    injector = FaultInjector()
    injector.force("hang", count=3, seconds=30)
    app = Vendor().app(injector.middleware())
    clock = ManualClock()
    retry = RetryPolicy(max_attempts=3, rng=random.Random(1))
    async with client_for(app, clock, retry=retry, attempt_timeout=0.05) as client:
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.get_json("/items")
    assert caught.value.status is None and caught.value.attempts == 3
    assert "TimeoutError" in caught.value.message
    assert client.stats.timeouts == 3 and injector.requests == 3


async def test_read_timeouts_over_tcp_are_retried() -> None:
    injector = FaultInjector()
    injector.force("hang", count=2, seconds=30)
    with SandboxServer(Vendor().app(injector.middleware())) as server:
        http = create_http_client(server.url, timeout=0.2)
        clock = ManualClock()
        async with client_for(Starlette(), clock, http=http) as client:
            assert await client.get_json("/items") == ITEMS
    assert client.stats.timeouts == 2 and client.stats.requests == 3


async def test_connection_errors_are_retried_then_raise_unavailable() -> None:
    sock = bind_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    http = create_http_client(f"http://127.0.0.1:{port}", timeout=2.0)
    async with client_for(Starlette(), ManualClock(), http=http) as client:
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.get_json("/items")
    assert "ConnectError" in caught.value.message
    assert client.stats.connection_errors == 5 and client.stats.retries == 4


async def test_malformed_json_is_retried_then_raises_bad_response() -> None:
    injector = FaultInjector()
    injector.force("malformed", count=1)
    app = Vendor().app(injector.middleware())
    async with client_for(app, ManualClock()) as client:
        assert await client.get_json("/items") == ITEMS
        injector.force("malformed", count=5)
        with pytest.raises(UpstreamBadResponse):
            await client.get_json("/items", retry=RetryPolicy(max_attempts=2))


async def test_no_content_decodes_to_none() -> None:
    vendor = Vendor(Response(status_code=204))
    async with client_for(vendor.app(), ManualClock()) as client:
        assert await client.get_json("/items") is None


async def test_on_attempt_reports_every_attempt() -> None:
    records: list[AttemptRecord] = []
    vendor = Vendor(Response("unavailable", 503))
    async with client_for(vendor.app(), ManualClock(), on_attempt=records.append) as client:
        await client.request("GET", "/items?token=abc")
    assert [(r.attempt, r.status) for r in records] == [(1, 503), (2, 200)]
    assert records[0].url == "http://sandbox/items?token=[redacted]"


async def test_full_jitter_backoff_stays_within_its_caps() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, rng=random.Random(3))
    for retry_index in range(8):
        cap = min(4.0, 0.5 * 2**retry_index)
        delays = [policy.backoff(retry_index) for _ in range(50)]
        assert all(0 <= d <= cap for d in delays) and max(delays) > cap / 2
    assert policy.delay(0, retry_after=9.0) == 9.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", wall_clock=lambda: 1445412470.0) == 10
    assert parse_retry_after("soon") is None and parse_retry_after("-3") == 0.0


# --------------------------------------------------------------------------- limiters


async def test_token_bucket_paces_at_rate_after_the_burst() -> None:
    clock = ManualClock()
    bucket = TokenBucket(4.0, 3.0, clock=clock, sleep=clock.sleep)
    start = clock()
    for _ in range(11):
        await bucket.acquire()
    assert clock() - start == pytest.approx((11 - 3) / 4)


async def test_token_bucket_is_fifo_under_concurrency() -> None:
    clock = ManualClock()
    bucket = TokenBucket(2.0, 2.0, clock=clock, sleep=clock.sleep)
    start = clock()
    served: list[tuple[int, float]] = []

    async def caller(i: int) -> None:
        await bucket.acquire()
        served.append((i, clock() - start))

    await asyncio.wait_for(asyncio.gather(*(caller(i) for i in range(8))), 5)
    assert [i for i, _ in served] == list(range(8))
    assert [t for _, t in served] == pytest.approx([0, 0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])


async def test_token_bucket_pause_holds_everyone_then_resumes_without_a_burst() -> None:
    clock = ManualClock()
    bucket = TokenBucket(2.0, 5.0, clock=clock, sleep=clock.sleep)
    start = clock()
    bucket.complete(RateLimitInfo(status=200, remaining=0, reset_after=3.0))
    times = []
    for _ in range(3):
        await bucket.acquire()
        times.append(clock() - start)
    assert times == pytest.approx([3.0, 3.5, 4.0])
    assert bucket.try_acquire() == pytest.approx(0.5)


WALL = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def paused_bucket(clock: ManualClock, pause: float, max_pause: float | None) -> TokenBucket:
    bucket = TokenBucket(2.0, 1.0, clock=clock, sleep=clock.sleep, max_pause=max_pause,
                         upstream="vendor", wall_clock=lambda: WALL)
    bucket.complete(RateLimitInfo(status=429, retry_after=pause))
    return bucket


async def test_token_bucket_refuses_a_pause_longer_than_max_pause_at_once() -> None:
    clock = ManualClock()
    bucket = paused_bucket(clock, 3600.0, max_pause=300.0)
    with pytest.raises(PausedTooLong) as caught:
        await asyncio.wait_for(bucket.acquire(), 5)
    assert str(caught.value) == (
        "vendor: asked us to send nothing before 2023-11-14T23:13:20+00:00 (3600 s from now), "
        "longer than the 300 s we wait")
    assert (caught.value.retry_after, caught.value.resume_at) == (3600.0, WALL + 3600)
    assert clock.sleeps == []
    shorter = paused_bucket(clock, 300.0, max_pause=300.0)  # as long as we wait: sat out
    start = clock()
    await asyncio.wait_for(shorter.acquire(), 5)
    assert clock() - start == pytest.approx(300.0)


async def test_token_bucket_refuses_a_pause_past_the_callers_deadline() -> None:
    clock = ManualClock()
    bucket = paused_bucket(clock, 100.0, max_pause=None)

    async def acquire_by(deadline: float) -> None:
        with pause_deadline(deadline):
            await asyncio.create_task(bucket.acquire())  # a task started inside inherits it

    with pytest.raises(PausedTooLong, match=r"\(100 s from now\), past this caller's deadline "
                                            r"\(30 s from now\)"):
        await asyncio.wait_for(acquire_by(clock() + 30), 5)
    assert clock.sleeps == []
    start = clock()
    await asyncio.wait_for(acquire_by(clock() + 100), 5)  # the pause ends by the deadline
    await asyncio.wait_for(bucket.acquire(), 5)  # outside the block nothing is refused
    assert clock() - start == pytest.approx(100.5)


async def test_a_caller_sitting_out_a_pause_fails_when_a_longer_one_comes() -> None:
    clock = ManualClock()
    bucket = paused_bucket(clock, 10.0, max_pause=60.0)
    waiting = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)  # it sleeps out the 10 s pause
    bucket.penalize(3600.0)
    with pytest.raises(PausedTooLong, match="3590 s from now"):
        await asyncio.wait_for(waiting, 5)
    assert clock.sleeps == [10.0]


async def test_after_a_long_retry_after_the_next_calls_fail_without_sending() -> None:
    vendor = Vendor(JSONResponse({"message": "slow down"}, 429, headers={"Retry-After": "3600"}))
    clock = ManualClock()
    retry = RetryPolicy(max_retry_after=60.0)
    bucket = TokenBucket(100.0, 10.0, clock=clock, sleep=clock.sleep,
                         max_pause=retry.max_retry_after, upstream="vendor")
    async with client_for(vendor.app(), clock, limiter=bucket, retry=retry) as client:
        with pytest.raises(UpstreamUnavailable) as first:
            await client.get_json("/items")
        with pytest.raises(PausedTooLong) as second:
            await client.get_json("/items")
    assert first.value.retry_after == 3600 and second.value.retry_after == 3600
    assert vendor.calls == 1 and clock.sleeps == []


async def test_window_limiter_never_exceeds_a_strict_window() -> None:
    clock = ManualClock()
    window = FixedWindowLimit(limit=10, window=60, clock=clock)
    app = Vendor().app(Middleware(RateLimitMiddleware, limit=window))
    # Configured for ShipStation's 40/min: the sandbox's headers say 10, and the client obeys.
    limiter = WindowLimiter(limit=40, window=60, clock=clock, sleep=clock.sleep)
    retry = RetryPolicy(max_attempts=1)  # any 429 would fail the test
    start = clock()
    async with client_for(app, clock, limiter=limiter, retry=retry, concurrency=8) as client:
        results = await asyncio.wait_for(
            asyncio.gather(*(client.get_json("/items") for _ in range(100))), 10
        )
    assert results == [ITEMS] * 100
    assert (window.admitted, window.rejected, client.stats.throttled) == (100, 0, 0)
    assert clock() - start >= 9 * 60


async def test_the_strict_window_does_reject_an_unlimited_client() -> None:
    clock = ManualClock()
    window = FixedWindowLimit(limit=10, window=60, clock=clock)
    app = Vendor().app(Middleware(RateLimitMiddleware, limit=window))
    async with client_for(app, clock, retry=RetryPolicy(max_attempts=1)) as client:
        results = await asyncio.gather(
            *(client.get_json("/items") for _ in range(30)), return_exceptions=True
        )
    assert sum(isinstance(r, UpstreamUnavailable) for r in results) == 20 == window.rejected


async def test_window_limiter_counts_for_itself_without_headers() -> None:
    clock = ManualClock()
    limiter = WindowLimiter(limit=3, window=10, margin=0, clock=clock, sleep=clock.sleep)
    start = clock()
    times = []
    for _ in range(7):
        await limiter.acquire()
        times.append(clock() - start)
        limiter.complete(RateLimitInfo(status=200))
    assert times == pytest.approx([0, 0, 0, 10, 10, 10, 20])


async def test_concurrency_limit_keeps_a_netsuite_pool_free_of_rejections() -> None:
    pool = ConcurrencyLimit(3)

    def sss_limit(rejection: Rejection) -> Response:
        return JSONResponse({"error": {"code": "SSS_REQUEST_LIMIT_EXCEEDED"}}, 400)

    faults = FaultInjector(plan=FaultPlan(latency_ms=10))
    app = Vendor().app(
        Middleware(RateLimitMiddleware, limit=pool, reject=sss_limit), faults.middleware()
    )
    async with client_for(app, ManualClock(), concurrency=3) as client:
        await asyncio.wait_for(asyncio.gather(*(client.get_json("/items") for _ in range(12))), 5)
    assert (pool.admitted, pool.rejected, pool.peak) == (12, 0, 3)


# --------------------------------------------------------------------------- redaction


async def test_secrets_never_reach_the_logs() -> None:
    secrets = [
        "SECRET-BEARER-123",
        "SECRET-KEY-456",
        "SECRET-APIKEY-457",
        "SECRET-COOKIE-458",
        "SECRET-QUERY-789",
        "SECRET-TOKEN-000",
        "SECRET-SIG-111",
        "sk1live2abc3def4ghi5jkl6mno7pqr",
    ]
    echo = {"message": "token sk1live2abc3def4ghi5jkl6mno7pqr is not valid here"}
    vendor = Vendor(*(JSONResponse(echo, 503) for _ in range(3)))
    http = asgi_client(
        vendor.app(),
        headers={
            "Authorization": "Bearer SECRET-BEARER-123",
            "x-api-key": "SECRET-KEY-456",
            "API-Key": "SECRET-APIKEY-457",
            "Cookie": "session=SECRET-COOKIE-458",
        },
    )
    url = "/items?page=2&api_key=SECRET-QUERY-789&access_token=SECRET-TOKEN-000&sig=SECRET-SIG-111"
    with capture_logs() as logs:
        async with client_for(Starlette(), ManualClock(), http=http,
                              retry=RetryPolicy(max_attempts=3)) as client:
            with pytest.raises(UpstreamUnavailable) as caught:
                await client.request("GET", url)
    text = repr(logs) + str(caught.value)
    assert [line["event"] for line in logs] == ["upstream_retry"] * 2 + ["upstream_failed"]
    assert "page=2" in logs[0]["url"] and "not valid here" in logs[0]["reason"]
    assert logs[-1]["headers"]["x-api-key"] == "[redacted]"
    for secret in secrets:
        assert secret not in text


def test_redact_headers_and_url() -> None:
    headers = httpx.Headers(
        {"Authorization": "Basic a2V5OnNlY3JldA==", "API-Key": "k", "x-api-key": "k",
         "Cookie": "c", "Accept": "application/json", "X-Rate-Limit-Remaining": "3"}
    )
    assert redact_headers(headers) == {
        "authorization": "[redacted]",
        "api-key": "[redacted]",
        "x-api-key": "[redacted]",
        "cookie": "[redacted]",
        "accept": "application/json",
        "x-rate-limit-remaining": "3",
    }
    assert (
        redact_url("https://user:pw@api.example/v1/x?limit=5&client_secret=s&refresh_token=t")
        == "https://user:[redacted]@api.example/v1/x?limit=5&client_secret=[redacted]"
        "&refresh_token=[redacted]"
    )
    assert redact_url("/catalog/search?query=jordan&pageSize=50") == (
        "/catalog/search?query=jordan&pageSize=50"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"type": "t", "title": "Unauthorized", "status": 401,
          "o:errorDetails": [{"detail": "Invalid login attempt.", "o:errorCode": "INVALID_LOGIN"}]},
         "INVALID_LOGIN: Invalid login attempt."),
        ({"statusCode": 400, "message": "Variant does not belong to product"},
         "Variant does not belong to product"),
        ({"request_id": "r", "errors": [{"error_source": "shipstation",
                                         "error_type": "validation",
                                         "error_code": "invalid_field_value",
                                         "message": "bad sku"}]},
         "invalid_field_value: bad sku"),
        ({"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token",
          "status": "error"}, "INVALID_TOKEN: invalid oauth token"),
    ],
)
def test_error_summary_reads_each_vendor_format(body: dict[str, object], expected: str) -> None:
    response = httpx.Response(400, json=body)
    assert error_summary(response) == f"HTTP 400 Bad Request: {expected}"


def test_error_summary_scrubs_credentials_from_bodies() -> None:
    text = (
        'Authorization: OAuth realm="123_SB1", oauth_token="tok", '
        'oauth_signature="i7MEtGwhCTIZbTsTrNGw9LdcERn4wsjt5C7TxmKWIfU=" was rejected; '
        "retry with Bearer eyJhbGciOi.eyJzdWIiOi.c2ln or client_secret=hunter2"
    )
    summary = error_summary(httpx.Response(401, text=text))
    assert summary.startswith("HTTP 401 Unauthorized: Authorization: OAuth realm=")
    for secret in ("tok\"", "i7MEtGwh", "eyJhbGciOi", "hunter2"):
        assert secret not in summary
    assert len(error_summary(httpx.Response(500, text="x" * 5000))) <= 200


async def test_create_http_client_has_sane_defaults() -> None:
    base = "https://api.example/v2"
    async with create_http_client(base, timeout=12.0, headers={"x-a": "b"}) as c:
        assert c.base_url == "https://api.example/v2/"
        assert (c.timeout.connect, c.timeout.read, c.timeout.pool) == (10.0, 12.0, 12.0)
        assert c.headers["x-a"] == "b" and c.follow_redirects is False
