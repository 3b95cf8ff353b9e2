"""Background tasks: stopped even when a cancellation is swallowed once."""

from __future__ import annotations

import asyncio
import time

from shared.tasks import BackgroundTasks


async def test_stop_cancels_again_a_task_that_swallowed_its_cancellation() -> None:
    swallowed = 0

    async def poll_loop() -> None:  # what a library swallowing one cancellation looks like
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    tasks = BackgroundTasks()
    task = tasks.spawn(poll_loop(), "poll-loop")
    await asyncio.sleep(0)
    started = time.monotonic()
    await tasks.stop(timeout=5)
    assert task.cancelled() and swallowed == 1
    assert time.monotonic() - started < 1


async def test_stop_gives_up_on_a_task_that_never_ends_after_the_timeout() -> None:
    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    tasks = BackgroundTasks()
    task = tasks.spawn(stubborn(), "stubborn")
    await asyncio.sleep(0)
    started = time.monotonic()
    await tasks.stop(timeout=0.3)
    assert not task.done() and 0.25 < time.monotonic() - started < 2
    task.cancel()  # what the event loop's end would do; lets the test end cleanly
    task.get_coro().close()
