"""The cheap helpers on the RPC paths: entry ids that are version 4 UUIDs, tokens never handed
out twice (also across a fork), today's UTC date and the moment of a write."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from services.timeentries import model
from services.timeentries.hot_store import unique_token
from services.timeentries.messages import moment_now


def test_entry_ids_are_distinct_version_4_uuids() -> None:
    ids = [model.new_entry_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)


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


def test_a_moment_is_the_same_instant_as_text_and_as_timestamp_fields() -> None:
    for _ in range(1000):
        moment = moment_now()
        parsed = datetime.fromisoformat(moment.iso)
        assert parsed.utcoffset() == timedelta(0)
        assert parsed == datetime.fromtimestamp(moment.seconds, UTC) + timedelta(
            microseconds=moment.nanos // 1000)
        assert moment.nanos % 1000 == 0
    assert abs(datetime.fromisoformat(moment_now().iso) - datetime.now(UTC)) < timedelta(seconds=1)
