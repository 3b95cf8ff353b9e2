"""shared.logging: what reaches the log is scrubbed of credentials, tracebacks included."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from shared.logging import configure_logging


@pytest.fixture
def processors() -> Iterator[list[Any]]:
    """The processors configure_logging sets up; the configuration is put back after."""
    before, handlers = structlog.get_config(), logging.getLogger().handlers[:]
    try:
        configure_logging("info", "json")
        yield structlog.get_config()["processors"]
    finally:
        structlog.configure(**before)
        logging.getLogger().handlers[:] = handlers


def test_a_logged_exception_is_scrubbed_like_every_other_field(processors: list[Any]) -> None:
    try:
        raise RuntimeError("login failed for postgresql://app:TopSecretPw@db/x")
    except RuntimeError as error:
        event: Any = {"event": "rpc_failed", "exc_info": error}
    for processor in processors:
        event = processor(None, "error", event)
    logged = json.loads(event)
    assert "RuntimeError" in logged["exception"] and "TopSecretPw" not in logged["exception"]
