"""shared.logging: what reaches the log is scrubbed of credentials, tracebacks included."""

from __future__ import annotations

import json

import pytest
import structlog

from shared.logging import configure_logging


def test_a_logged_exception_is_scrubbed_like_every_other_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    try:
        raise RuntimeError("login failed for postgresql://app:TopSecretPw@db/x")
    except RuntimeError as error:
        structlog.get_logger("test").error("rpc_failed", exc_info=error)
    logged = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert "RuntimeError" in logged["exception"] and "TopSecretPw" not in logged["exception"]
