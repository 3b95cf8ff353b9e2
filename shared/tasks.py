"""Background tasks owned by a service: named, logged when they fail, cancelled on stop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

__all__ = ["BackgroundTasks"]

log = structlog.get_logger("tasks")

RECANCEL_SECONDS = 0.1


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()

    async def pause(self, seconds: float) -> bool:
        """Waits ``seconds``; False, at once, when the tasks are being stopped. A poll loop
        written ``while await tasks.pause(interval)`` ends at its next pause even if its
        cancellation got lost in a library on the way."""
        if self._stopping.is_set():
            return False
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return True
        return False

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background_task_failed", task=task.get_name(), exc_info=task.exception())

    async def stop(self, timeout: float = 5.0) -> None:
        """Ends :meth:`pause` for good, cancels every task and waits up to ``timeout`` for them
        to end. A task whose cancellation was swallowed (uncancelled, as a library's timeout
        does when it takes the cancel for its own) is cancelled again; one still cleaning up
        after its cancellation is left to finish."""
        self._stopping.set()
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        deadline = asyncio.get_running_loop().time() + timeout
        while pending:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("background_tasks_left_running",
                            tasks=sorted(task.get_name() for task in pending))
                return
            _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_SECONDS, left))
            for task in pending:
                if task.cancelling() == 0:  # its cancellation was swallowed
                    task.cancel()
