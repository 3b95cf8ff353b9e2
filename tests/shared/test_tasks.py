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
                asyncio.current_task().uncancel()  # type: ignore[union-attr]  # as timeouts do

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


async def test_stop_lets_a_cancelled_task_finish_its_cleanup() -> None:
    cleaned = False

    async def closes_slowly() -> None:  # e.g. a connection closed in a finally
        nonlocal cleaned
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.3)  # longer than a re-cancel period
            cleaned = True

    tasks = BackgroundTasks()
    task = tasks.spawn(closes_slowly(), "closes-slowly")
    await asyncio.sleep(0)
    await tasks.stop(timeout=5)
    assert task.cancelled() and cleaned


async def test_a_poll_loop_ends_at_its_next_pause_even_if_its_cancellation_got_lost() -> None:
    async def poll() -> None:
        while True:
            try:
                if not await tasks.pause(3600):
                    return
            except asyncio.CancelledError:
                continue  # lost on the way, as a library can lose it

    tasks = BackgroundTasks()
    task = tasks.spawn(poll(), "poll")
    await asyncio.sleep(0)
    started = time.monotonic()
    await tasks.stop(timeout=5)
    assert task.done() and not task.cancelled()  # it returned from its loop
    assert time.monotonic() - started < 1
    assert not await tasks.pause(3600)  # at once, for good
