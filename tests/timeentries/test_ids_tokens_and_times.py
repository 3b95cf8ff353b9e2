"""The cheap helpers on the RPC paths: entry ids that are version 4 UUIDs, tokens never handed
out twice (also across a fork), today's UTC date and the moment of a write."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from services.timeentries import model
from services.timeentries.hot_store import unique_token
from services.timeentries.messages import moment_now


def test_entry_ids_are_distinct_version_4_uuids_also_across_a_fork() -> None:
    ids = [model.new_entry_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)
    in_child = _in_a_fork(model.new_entry_id)
    assert in_child != model.new_entry_id()  # not the parent's next bytes


def _in_a_fork(make: Callable[[], str]) -> str:
    """What ``make`` returns in a forked child."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report and leave at once
        os.write(write, make().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        return pipe.read()


def test_unique_tokens_never_repeat_in_a_process_or_its_fork() -> None:
    tokens = {unique_token() for _ in range(20_000)}
    assert len(tokens) == 20_000
    in_child = _in_a_fork(lambda: f"{unique_token()} {unique_token()}").split()
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


def test_a_moment_is_the_same_instant_as_text_and_as_timestamp_fields(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([1_795_393_101_000_000_000, 1_795_393_101_000_001_000, 1_795_393_101_999_999_999,
                  1_795_393_102_123_456_789, 0])
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    texts = [moment_now().iso for _ in range(5)]
    assert texts == [datetime.fromtimestamp(seconds, UTC).isoformat() for seconds in (
        1_795_393_101, 1_795_393_101.000001, 1_795_393_101.999999, 1_795_393_102.123456, 0)]
    monkeypatch.undo()
    for _ in range(1000):
        moment = moment_now()
        parsed = datetime.fromisoformat(moment.iso)
        assert parsed.utcoffset() == timedelta(0)
        assert parsed == datetime.fromtimestamp(moment.seconds, UTC) + timedelta(
            microseconds=moment.nanos // 1000)
        assert moment.nanos % 1000 == 0
    assert abs(datetime.fromisoformat(moment_now().iso) - datetime.now(UTC)) < timedelta(seconds=1)
