"""Waiting for a child process to be ready stops as soon as the child has exited."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from shared.processes import (
    ManagedProcess,
    ProcessExited,
    free_port,
    wait_for_health,
    wait_for_port,
)


@pytest.mark.parametrize("wait", ["port", "health"])
def test_waiting_for_a_process_that_exited_fails_at_once(tmp_path: Path, wait: str) -> None:
    port = free_port()
    process = ManagedProcess("exits", [sys.executable, "-c", "raise SystemExit(3)"], {},
                             tmp_path / "exits.log").start()
    started = time.monotonic()
    with pytest.raises(ProcessExited):
        if wait == "port":
            wait_for_port("127.0.0.1", port, 60, alive=lambda: process.running)
        else:
            wait_for_health(f"127.0.0.1:{port}", 60, alive=lambda: process.running)
    assert time.monotonic() - started < 10
    process.stop()


def test_without_alive_a_wait_ends_at_its_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", free_port(), 0.3)
    assert time.monotonic() - started < 5
