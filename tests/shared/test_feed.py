"""shared.feed.ReconnectingFeed's backoff: doubling while connecting fails, from the start
again after any connection that was up, however it ended (lost, or a failed keep-alive)."""

from __future__ import annotations

import asyncio

import pytest

from shared import feed as feed_module
from shared.feed import MAX_RECONNECT_DELAY, ReconnectingFeed

pytestmark = pytest.mark.timeout(10)


class Scripted(ReconnectingFeed):
    """Each attempt plays the next step: "refused" (fails before listening), "lost" (up, then
    returns) or "failed" (up, then raises)."""

    def __init__(self, steps: list[str]) -> None:
        super().__init__("scripted", [], first_retry_delay=0.1)
        self.steps = steps

    async def _listen_until_lost(self) -> None:
        step = self.steps.pop(0)
        if step == "refused":
            raise ConnectionRefusedError
        self._up()
        self._down()
        if step == "failed":
            raise TimeoutError


async def test_backoff_doubles_while_refused_and_starts_over_after_any_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps = ["refused", "refused", "failed", "refused", "lost", "refused", "refused", "refused",
             "refused", "refused", "refused"]
    feed = Scripted(list(steps))
    delays: list[float] = []

    async def no_wait(delay: float) -> None:
        delays.append(delay)
        if not feed.steps:
            raise asyncio.CancelledError

    monkeypatch.setattr(feed_module.asyncio, "sleep", no_wait)
    with pytest.raises(asyncio.CancelledError):
        await feed.run()
    assert delays == pytest.approx([0.1, 0.2, 0.1, 0.2, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2,
                                    MAX_RECONNECT_DELAY])
    assert feed.connects == 2
