"""Background tasks owned by a service: named, logged when they fail, cancelled on stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import structlog

__all__ = ["BackgroundTasks"]

log = structlog.get_logger("tasks")

RECANCEL_SECONDS = 0.1


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

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
        """Cancels every task and waits up to ``timeout`` for them to end. A task still
        running a moment after its cancellation is cancelled again: on Python 3.11 a
        cancellation that lands as a library's own timeout fires can be swallowed (seen with
        a Redis poll loop, which then slept on), and one cancel would leave it to the timeout.
        """
        pending = set(self._tasks)
        deadline = asyncio.get_running_loop().time() + timeout
        while pending:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("background_tasks_left_running",
                            tasks=sorted(task.get_name() for task in pending))
                return
            for task in pending:
                task.cancel()
            with contextlib.suppress(Exception):
                _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_SECONDS, left))
