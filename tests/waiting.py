"""Waiting in tests: poll a condition, with a deadline (no test waits without one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["wait_for"]


async def wait_for(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.1,
                   what: str = "condition") -> Any:
    """Polls ``check`` (sync or async) every ``every`` seconds until it returns something
    truthy, and returns that; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout} s")
        await asyncio.sleep(every)
