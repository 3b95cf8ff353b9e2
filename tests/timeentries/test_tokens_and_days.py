"""The cheap helpers on the RPC paths: tokens never handed out twice (also across a fork), and
today's UTC date from the clock."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

import pytest

from services.timeentries import model
from services.timeentries.hot_store import unique_token


def test_unique_tokens_never_repeat_in_a_process_or_its_fork() -> None:
    tokens = {unique_token() for _ in range(20_000)}
    assert len(tokens) == 20_000
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report two tokens and leave at once
        os.write(write, f"{unique_token()} {unique_token()}".encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        in_child = pipe.read().split()
    mine = unique_token()
    assert len(in_child) == 2 and not set(in_child) & (tokens | {mine})
    assert in_child[0][:16] != mine[:16], "a fork keeps generating from the parent's prefix"


def test_utc_today_turns_at_utc_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    assert model.utc_today() == datetime.now(UTC).date()
    midnight = datetime(2031, 5, 17, tzinfo=UTC).timestamp()
    monkeypatch.setattr(model.time, "time", lambda: midnight - 0.001)
    assert model.utc_today() == date(2031, 5, 16)
    monkeypatch.setattr(model.time, "time", lambda: midnight)
    assert model.utc_today() == date(2031, 5, 17)
    monkeypatch.setattr(model.time, "time", lambda: midnight + 86399.9)
    assert model.utc_today() == date(2031, 5, 17)
