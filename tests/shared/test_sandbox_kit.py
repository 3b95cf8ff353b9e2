"""shared.sandbox: fault injection, rate-limit emulation, data generation and the runner."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.sandbox import (
    ConcurrencyLimit,
    FaultInjector,
    FaultPlan,
    FixedWindowLimit,
    ManualClock,
    RateLimitMiddleware,
    Rejection,
    SandboxServer,
    TokenBucketLimit,
    asgi_client,
    city,
    company_name,
    date_between,
    email,
    first_name,
    header_key,
    industry,
    last_name,
    mutation_round,
    phone,
    price,
    product_name,
    rng_for,
    sku,
)

pytestmark = pytest.mark.timeout(20)

ROOT = Path(__file__).resolve().parents[2]


async def echo(request: Request) -> Response:
    return JSONResponse({"path": request.url.path, "body": (await request.body()).decode()})


def stockx_error(status: int, message: str) -> Response:
    return JSONResponse({"statusCode": status, "message": message}, status_code=status)


def sandbox(*middleware: Middleware) -> Starlette:
    routes = [Route("/{path:path}", echo, methods=["GET", "POST"])]
    return Starlette(routes=routes, middleware=list(middleware))


# --------------------------------------------------------------------------- faults


async def test_forced_faults_use_the_vendor_error_body() -> None:
    faults = FaultInjector(stockx_error)
    faults.force("status", count=3, status=429, retry_after=1)
    async with asgi_client(sandbox(faults.middleware())) as http:
        answers = [await http.get("/catalog/search") for _ in range(4)]
    assert [r.status_code for r in answers] == [429, 429, 429, 200]
    assert answers[0].headers["retry-after"] == "1"
    assert answers[0].json() == {"statusCode": 429, "message": "injected fault: HTTP 429"}
    assert (faults.requests, faults.injected) == (4, 3)
    assert faults.by_path["/catalog/search"] == 4


async def test_a_caller_gone_before_its_body_was_read_is_no_error() -> None:
    """A client that hangs up mid-request (a worker stopped mid-call) leaves the sandbox quiet:
    no traceback, nothing sent."""
    app = sandbox(FaultInjector().middleware())
    sent: list[object] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: object) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/logs", "raw_path": b"/logs",
             "query_string": b"", "headers": [], "http_version": "1.1", "scheme": "http",
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000), "root_path": ""}
    await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent == []


async def test_faults_target_a_path_prefix() -> None:
    faults = FaultInjector()
    faults.force("status", status=500, count=5, path_prefix="/orders")
    faults.configure(FaultPlan(error_rate=1.0, error_status=502, path_prefix="/stores"))
    async with asgi_client(sandbox(faults.middleware())) as http:
        statuses = [(await http.get(p)).status_code for p in ("/products", "/orders/1", "/stores")]
    assert statuses == [200, 500, 502]


async def test_error_rate_is_deterministic_for_a_seed() -> None:
    async def statuses(seed: int) -> list[int]:
        faults = FaultInjector(plan=FaultPlan(error_rate=0.3, error_status=503, seed=seed))
        async with asgi_client(sandbox(faults.middleware())) as http:
            return [(await http.get("/x")).status_code for _ in range(60)]

    first, again, other = await statuses(1), await statuses(1), await statuses(2)
    assert first == again and first != other
    assert 8 <= first.count(503) <= 30 and set(first) == {200, 503}


async def test_latency_and_jitter_go_through_the_injected_sleep() -> None:
    clock = ManualClock()
    faults = FaultInjector(plan=FaultPlan(latency_ms=100, jitter_ms=50, seed=3), sleep=clock.sleep)
    async with asgi_client(sandbox(faults.middleware())) as http:
        for _ in range(20):
            await http.get("/x")
    assert len(clock.sleeps) == 20 and all(0.1 <= s <= 0.15 for s in clock.sleeps)
    assert len(set(clock.sleeps)) > 1


async def test_real_latency_delays_the_answer() -> None:
    faults = FaultInjector(plan=FaultPlan(latency_ms=40))
    loop = asyncio.get_running_loop()
    async with asgi_client(sandbox(faults.middleware())) as http:
        started = loop.time()
        await http.get("/x")
    assert loop.time() - started >= 0.035


async def test_malformed_body_and_hang_then_answer() -> None:
    clock = ManualClock()
    faults = FaultInjector(sleep=clock.sleep)
    faults.force("malformed")
    faults.force("hang", seconds=30)
    async with asgi_client(sandbox(faults.middleware())) as http:
        malformed = await http.get("/x")
        hung = await http.post("/orders", content=b'{"id": 1}')
    with pytest.raises(json.JSONDecodeError):
        malformed.json()
    assert malformed.status_code == 200
    assert hung.json() == {"path": "/orders", "body": '{"id": 1}'}  # the body was replayed
    assert clock.sleeps == [30]


def counting_sandbox(faults: FaultInjector, carried_out: list[str]) -> Starlette:
    async def record(request: Request) -> Response:
        carried_out.append(request.url.path)
        return JSONResponse({"id": len(carried_out)})

    routes = [Route("/{path:path}", record, methods=["POST"])]
    return Starlette(routes=routes, middleware=[faults.middleware()])


async def test_a_lost_answer_is_carried_out_and_then_withheld() -> None:
    clock = ManualClock()
    faults = FaultInjector(sleep=clock.sleep)
    faults.force("lost", seconds=5)
    carried_out: list[str] = []
    async with asgi_client(counting_sandbox(faults, carried_out)) as http:
        lost = await http.post("/logs")
        answered = await http.post("/logs")
    assert carried_out == ["/logs", "/logs"]  # both happened; the first caller was not told
    assert lost.status_code == 504 and "id" not in lost.json()
    assert answered.json() == {"id": 2}
    assert clock.sleeps == [5]


async def test_a_lost_answer_over_tcp_leaves_the_caller_to_time_out() -> None:
    faults = FaultInjector()
    faults.force("lost", seconds=30)
    carried_out: list[str] = []
    with SandboxServer(counting_sandbox(faults, carried_out)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=0.5) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post("/logs")
            assert carried_out == ["/logs"]
            assert (await http.post("/logs")).json() == {"id": 2}


async def test_http_control_endpoints() -> None:
    faults = FaultInjector(stockx_error, extra_stats=lambda: {"vendor": "stockx"})
    async with asgi_client(sandbox(faults.middleware())) as http:
        body = {"force": [{"kind": "status", "status": 503, "count": 2}],
                "plan": {"latency_ms": 0, "seed": 5}}
        posted = await http.post("/_sandbox/faults", json=body)
        assert posted.status_code == 200 and posted.json()["forced"][0]["count"] == 2
        assert [(await http.get("/x")).status_code for _ in range(3)] == [503, 503, 200]
        stats = (await http.get("/_sandbox/stats")).json()
        assert (stats["requests"], stats["injected"], stats["vendor"]) == (3, 2, "stockx")
        assert stats["by_path"] == {"/x": 3} and stats["plan"]["seed"] == 5

        await http.post("/_sandbox/faults", json={"plan": {"error_rate": 1.0}})
        assert (await http.get("/x")).status_code == 503
        assert (await http.delete("/_sandbox/faults")).status_code == 200
        assert (await http.get("/x")).status_code == 200
        assert (await http.delete("/_sandbox/stats")).json()["requests"] == 0

        for bad in (b"{not json", b'{"plan": {"nope": 1}}', b'{"force": [{"count": "2"}]}',
                    b'{"force": [{"kind": "explode"}]}', b"[]"):
            answer = await http.post("/_sandbox/faults", content=bad)
            assert answer.status_code == 400, bad
        assert (await http.get("/_sandbox/nothing")).status_code == 404
    assert faults.requests == 0  # control requests are never counted


# --------------------------------------------------------------------------- rate limits


def shipstation_v1_429(rejection: Rejection) -> Response:
    return JSONResponse({"Message": "Too Many Requests"}, status_code=429)


async def test_fixed_window_exposes_shipstation_headers_per_key() -> None:
    clock = ManualClock()
    window = FixedWindowLimit(limit=3, window=60, clock=clock)
    by_key = header_key("authorization")
    limited = Middleware(RateLimitMiddleware, limit=window, reject=shipstation_v1_429, key=by_key)
    async with asgi_client(sandbox(limited), auth=("key", "secret")) as http:
        answers = [await http.get("/warehouses") for _ in range(4)]
        clock.advance(20)
        later = await http.get("/warehouses", auth=("other", "pair"))
        clock.advance(40)
        reset = await http.get("/warehouses")
        control = await http.get("/_sandbox/stats")
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["x-rate-limit-remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert {r.headers["x-rate-limit-limit"] for r in answers} == {"3"}
    assert answers[0].headers["x-rate-limit-reset"] == "60"
    assert answers[3].json() == {"Message": "Too Many Requests"}
    assert later.status_code == 200 and later.headers["x-rate-limit-remaining"] == "2"
    assert reset.status_code == 200 and reset.headers["x-rate-limit-remaining"] == "2"
    assert "x-rate-limit-limit" not in control.headers
    assert (window.admitted, window.rejected) == (5, 1)
    assert all("key" not in k and "secret" not in k for k in window.rejected_by_key)


async def test_token_bucket_limit_answers_429_with_retry_after() -> None:
    clock = ManualClock()
    per_second = TokenBucketLimit(rate=1.0, clock=clock)
    async with asgi_client(sandbox(Middleware(RateLimitMiddleware, limit=per_second))) as http:
        first, second = await http.get("/x"), await http.get("/x")
        clock.advance(0.4)
        third = await http.get("/x")
        clock.advance(0.6)
        fourth = await http.get("/x")
    assert [r.status_code for r in (first, second, third, fourth)] == [200, 429, 429, 200]
    assert second.headers["retry-after"] == "1" and third.headers["retry-after"] == "1"
    assert per_second.stats() == {"kind": "rate", "admitted": 2, "rejected": 2}


async def test_concurrency_limit_rejects_in_the_vendor_format() -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(request: Request) -> Response:
        entered.set()
        await release.wait()
        return JSONResponse({"ok": True})

    def sss_limit(rejection: Rejection) -> Response:
        assert rejection.kind == "concurrency"
        body = {"error": {"code": "SSS_REQUEST_LIMIT_EXCEEDED", "message": "limit exceeded"}}
        return JSONResponse(body, status_code=400)

    pool = ConcurrencyLimit(max_in_flight=1)
    app = Starlette(
        routes=[Route("/restlet", slow)],
        middleware=[Middleware(RateLimitMiddleware, limit=pool, reject=sss_limit)],
    )
    async with asgi_client(app) as http:
        first = asyncio.ensure_future(http.get("/restlet"))
        await asyncio.wait_for(entered.wait(), 5)
        rejected = await asyncio.wait_for(http.get("/restlet"), 5)
        release.set()
        admitted = await asyncio.wait_for(first, 5)
    assert rejected.status_code == 400
    assert rejected.json()["error"]["code"] == "SSS_REQUEST_LIMIT_EXCEEDED"
    assert admitted.status_code == 200
    assert (pool.admitted, pool.rejected, pool.in_flight["global"], pool.peak) == (1, 1, 0, 1)


# --------------------------------------------------------------------------- data


def customer(seed: int | str, record_id: int) -> dict[str, object]:
    rng = rng_for(seed, "customer", record_id)
    first, last = first_name(rng), last_name(rng)
    place = city(rng)
    start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    return {
        "company": company_name(rng),
        "email": email(rng, first, last),
        "phone": phone(rng),
        "city": place.name,
        "country": place.country_code,
        "industry": industry(rng),
        "item": product_name(rng),
        "sku": sku(rng, "SS-"),
        "created": date_between(rng, start, end),
        "price": price(rng, "5.00", "50.00"),
    }


def test_same_seed_gives_the_same_data_and_another_seed_other_data() -> None:
    first = [customer(42, i) for i in range(50)]
    assert first == [customer("42", i) for i in range(50)]
    assert first != [customer(43, i) for i in range(50)]
    assert customer(42, 7) == first[7]  # independent of generation order
    assert len({c["company"] for c in first}) > 30


def test_generated_values_look_like_business_data() -> None:
    for i in range(200):
        c = customer(1, i)
        assert re.fullmatch(r"[a-z]+\.[a-z]+@[a-z]+\.example", str(c["email"]))
        assert re.fullmatch(r"\+1-\d{3}-555-01\d{2}", str(c["phone"]))
        assert re.fullmatch(r"SS-[A-Z]{3}-\d{5}", str(c["sku"]))
        amount = c["price"]
        assert isinstance(amount, Decimal) and Decimal("5") <= amount <= Decimal("50")
        assert amount == amount.quantize(Decimal("0.01"))
        created = c["created"]
        assert isinstance(created, datetime) and created.tzinfo is UTC
        assert datetime(2020, 1, 1, tzinfo=UTC) <= created <= datetime(2025, 1, 1, tzinfo=UTC)


def test_rng_for_is_stable_across_processes() -> None:
    here = [rng_for(42, "customer", 7).random() for _ in range(1)]
    code = "from shared.sandbox import rng_for; print(repr(rng_for(42, 'customer', 7).random()))"
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=15, cwd=ROOT,
        env={"PYTHONHASHSEED": "123", "PATH": ""}, check=True,
    ).stdout
    assert float(there) == here[0]


def test_mutation_round_picks_an_exact_deterministic_share() -> None:
    ids = [f"cust-{i}" for i in range(1000)]
    round1 = mutation_round(ids, 0.05, 1, seed=9)
    assert len(round1) == 50 and round1 == mutation_round(ids, 0.05, 1, seed=9)
    assert round1 == sorted(round1, key=ids.index)  # in input order
    assert round1 != mutation_round(ids, 0.05, 2, seed=9)
    assert round1 != mutation_round(ids, 0.05, 1, seed=10)
    assert mutation_round(ids, 0.0, 1, seed=9) == [] and mutation_round(ids, 1.0, 1, 9) == ids
    with pytest.raises(ValueError):
        mutation_round(ids, 1.5, 1, seed=9)


# --------------------------------------------------------------------------- runner


async def test_sandbox_server_serves_over_tcp_on_a_real_port() -> None:
    server = SandboxServer(sandbox())
    url = server.start()
    try:
        assert server.port != 0 and url == f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            answer = await http.post("/hello", content=b"hi")
        assert answer.json() == {"path": "/hello", "body": "hi"}
    finally:
        server.stop()
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/hello")


async def test_serve_runs_in_the_foreground_until_sigterm() -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
        from shared.sandbox import serve

        async def ok(request):
            return PlainTextResponse("ok")

        app = Starlette(routes=[Route("/", ok)])
        asyncio.run(serve(app, "127.0.0.1", 0, on_ready=lambda url: print(url, flush=True)))
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        url = ""
        while not url.startswith("http://"):  # the log line may come first on stdout
            url = (await asyncio.wait_for(process.stdout.readline(), 10)).decode().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and not url.endswith(":0")
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(url + "/")).text == "ok"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) in (0, -signal.SIGTERM)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
