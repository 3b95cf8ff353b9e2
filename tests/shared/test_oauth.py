"""RefreshingToken: one refresh at a time, renewed before expiry, refused tokens forgotten."""

from __future__ import annotations

import asyncio

from shared.oauth import AccessToken, RefreshingToken


class CountingGrant(RefreshingToken):
    def __init__(self, clock: list[float]) -> None:
        super().__init__(margin_seconds=60, clock=lambda: clock[0])
        self.grants = 0

    async def grant(self) -> AccessToken:
        self.grants += 1
        await asyncio.sleep(0.01)  # concurrent callers pile up behind this refresh
        return AccessToken(f"token-{self.grants}", lifetime_seconds=3600)


async def test_concurrent_callers_share_one_refresh() -> None:
    tokens = CountingGrant([0.0])
    assert set(await asyncio.gather(*(tokens.get() for _ in range(50)))) == {"token-1"}
    assert tokens.grants == tokens.refreshes == 1


async def test_a_token_is_renewed_margin_seconds_before_it_expires() -> None:
    clock = [0.0]
    tokens = CountingGrant(clock)
    assert await tokens.get() == "token-1"
    clock[0] = 3600 - 61
    assert await tokens.get() == "token-1"
    clock[0] = 3600 - 59
    assert await tokens.get() == "token-2"


class ShortLivedGrant(CountingGrant):
    async def grant(self) -> AccessToken:
        self.grants += 1
        return AccessToken(f"token-{self.grants}", lifetime_seconds=40)  # < the 60 s margin


async def test_a_token_living_less_than_the_margin_is_renewed_halfway_not_on_every_call() -> None:
    clock = [0.0]
    tokens = ShortLivedGrant(clock)
    assert [await tokens.get() for _ in range(3)] == ["token-1"] * 3
    clock[0] = 19
    assert await tokens.get() == "token-1"
    clock[0] = 21
    assert await tokens.get() == "token-2"


async def test_a_refused_token_is_forgotten_unless_already_replaced() -> None:
    tokens = CountingGrant([0.0])
    first = await tokens.get()
    tokens.invalidate(first)
    second = await tokens.get()
    assert second == "token-2"
    tokens.invalidate(first)  # a late 401 for the old token keeps the new one
    assert await tokens.get() == "token-2"
