"""SyncJob.operation: how a step that fails or is cancelled is recorded; page tokens."""

from __future__ import annotations

import asyncio

import pytest

from shared.errors import InvalidArgument
from shared.paging import decode_page_token, encode_page_token
from shared.sync import INTERRUPTED_STEP, SyncJob


async def test_a_cancelled_step_is_recorded_failed_keeping_an_error_it_set() -> None:
    job = SyncJob("products")
    entered = asyncio.Event()

    async def step(name: str, error: str = "") -> None:
        async with job.operation(name) as op:
            op.error = error
            entered.set()
            await asyncio.sleep(30)

    for name, error in (("plain", ""), ("explained", "stopped early: quota")):
        entered.clear()
        task = asyncio.create_task(step(name, error))
        await asyncio.wait_for(entered.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [(op.name, op.ok, op.error) for op in job.operations] == [
        ("plain", False, INTERRUPTED_STEP), ("explained", False, "stopped early: quota")]


def test_a_page_token_round_trips_and_a_forged_one_is_refused() -> None:
    position = {"d": "2026-11-20", "i": "abc"}
    assert decode_page_token(encode_page_token(position), required=("d", "i")) == position
    with_nul = encode_page_token({"d": "a\x00b", "i": ""})
    for forged in ("%%%", encode_page_token({"d": "x"}), with_nul):
        with pytest.raises(InvalidArgument, match="page_token"):
            decode_page_token(forged, required=("d", "i"))
