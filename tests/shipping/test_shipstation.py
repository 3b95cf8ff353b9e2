"""The ShipStation client against the sandbox (in-process), and v1 date handling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TypeVar

import httpx
import pytest

from services.shipping.sandbox import AccountSpec, SandboxConfig, ShipStationSandbox, credentials_of
from services.shipping.shipstation import (
    Credentials,
    Limits,
    Page,
    ShipStationClient,
    format_v1_date,
    parse_v1_date,
)
from shared.config import Secret
from shared.sandbox import ManualClock
from shared.upstream import UpstreamAuthError, UpstreamUnavailable

T = TypeVar("T")


def test_v1_dates_are_pacific_with_seven_fraction_digits() -> None:
    winter = parse_v1_date("2014-01-21T08:11:43.8800000")
    assert winter == datetime(2014, 1, 21, 16, 11, 43, 880000, tzinfo=UTC)  # PST = UTC-8
    summer = parse_v1_date("2014-07-21T08:11:43.8800000")
    assert summer == datetime(2014, 7, 21, 15, 11, 43, 880000, tzinfo=UTC)  # PDT = UTC-7
    assert format_v1_date(summer) == "2014-07-21T08:11:43.8800000"
    assert parse_v1_date(format_v1_date(winter)) == winter
    assert parse_v1_date(None) is None


def _client(sandbox: ShipStationSandbox, number: int = 1, clock: ManualClock | None = None,
            **limits: float) -> ShipStationClient:
    key, secret, v2 = credentials_of(number)
    timing = {"clock": clock, "sleep": clock.sleep} if clock else {}
    return ShipStationClient.create(
        Credentials(Secret(key), Secret(secret), Secret(v2)), v1_url="http://ss",
        v2_url="http://ss", transport=httpx.ASGITransport(app=sandbox),
        limits=Limits(**limits), **timing)  # type: ignore[arg-type]


async def _all(pages: AsyncIterator[Page[T]]) -> list[T]:
    return [item async for page in pages for item in page.items]


def _sandbox(clock: ManualClock, **overrides: float) -> ShipStationSandbox:
    config = SandboxConfig(accounts=(AccountSpec(1, products=130),), **overrides)  # type: ignore[arg-type]
    return ShipStationSandbox(config, clock=clock, sleep=clock.sleep)


async def test_wrong_credentials_are_refused_on_both_apis() -> None:
    sandbox = _sandbox(ManualClock())
    client = _client(sandbox, number=9)  # no such account
    with pytest.raises(UpstreamAuthError) as v1:
        await client.warehouses()
    with pytest.raises(UpstreamAuthError) as v2:
        await _all(client.inventory_warehouse_pages())
    assert (v1.value.status, v2.value.status) == (401, 401)
    assert v2.value.code == "unauthorized"
    await client.aclose()


async def test_paging_uses_the_fewest_requests_and_reads_everything() -> None:
    clock = ManualClock()
    sandbox = _sandbox(clock)
    client = _client(sandbox, clock=clock, page_size=50, v2_page_size=100,
                     v2_per_minute=6000, v2_burst=10)
    products = await _all(client.product_pages())
    assert len(products) == 130 and len({p.product_id for p in products}) == 130
    assert client.v1.stats.requests == 3
    levels = await _all(client.inventory_pages())
    assert len(levels) == 260 and client.v2.stats.requests == 3
    assert (await client.stores())[0].store_id == 10001
    await client.aclose()


async def test_v1_window_is_never_exceeded() -> None:
    clock = ManualClock()
    sandbox = _sandbox(clock, v1_limit=3, v1_window=10.0)
    client = _client(sandbox, clock=clock, v1_limit=3, v1_window=10.0, v1_margin=0.5,
                     page_size=10)
    started = clock()
    products = await _all(client.product_pages())
    assert len(products) == 130  # 13 pages: 5 windows of 3
    assert sandbox.v1_limit.rejected == 0 and client.v1.stats.throttled == 0
    assert clock() - started >= 40.0
    await client.aclose()


async def test_v2_429_and_5xx_are_retried_with_retry_after() -> None:
    clock = ManualClock()
    sandbox = _sandbox(clock)
    sandbox.v2_faults.force("status", status=429, count=1, retry_after=7,
                            path_prefix="/v2/inventory_locations")
    sandbox.v2_faults.force("status", status=503, count=1, path_prefix="/v2/inventory_locations")
    client = _client(sandbox, clock=clock, v2_per_minute=6000, v2_burst=10)
    started = clock()
    locations = await _all(client.inventory_location_pages())
    assert len(locations) == 12
    assert client.v2.stats.retries == 2 and client.v2.stats.throttled == 1
    assert clock() - started >= 7.0
    sandbox.v2_faults.force("status", status=500, count=10, path_prefix="/v2/inventory")
    with pytest.raises(UpstreamUnavailable):
        await _all(client.inventory_warehouse_pages())
    await client.aclose()


async def test_sandbox_changes_between_rounds() -> None:
    clock = ManualClock()
    sandbox = _sandbox(clock, mutate_every=60.0, mutation_share=0.1)
    client = _client(sandbox, clock=clock)
    before = {p.product_id: p for p in await _all(client.product_pages())}
    clock.advance(61)
    after = {p.product_id: p for p in await _all(client.product_pages())}
    assert before != after and len(after) == len(before)
    changed = [pid for pid in after if pid in before and after[pid] != before[pid]]
    assert changed
    since = max(p.modified_at for p in before.values() if p.modified_at)
    recent = await _all(client.product_pages(since))
    assert {p.product_id for p in recent} >= set(changed)
    await client.aclose()
