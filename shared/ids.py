"""Ids unique across processes without a system call each: a random prefix per process (drawn
again in a forked child, so parent and child never share one) followed by a counter."""

from __future__ import annotations

import itertools
import os
import secrets

__all__ = ["UniqueIds"]


class UniqueIds:
    """``ids()`` → a string never handed out before by any process: 16 hex digits of the
    process's prefix, then the counter in hex (zero-padded to ``width`` digits)."""

    def __init__(self, width: int = 0) -> None:
        self._format = f"{{}}{{:0{width}x}}"
        self._start()
        os.register_at_fork(after_in_child=self._start)

    def _start(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._numbers = itertools.count(1)

    def __call__(self) -> str:
        return self._format.format(self._prefix, next(self._numbers))
