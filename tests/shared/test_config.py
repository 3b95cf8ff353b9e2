"""Settings from the environment: typed, validated at once, secrets never printed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from shared.config import ConfigError, Secret, env, load
from shared.redaction import MASK, redact, redact_text


@dataclass(frozen=True)
class DemoSettings:
    url: Secret = env("DEMO_URL")
    port: int = env("DEMO_PORT", default=8080)
    ratio: float = env("DEMO_RATIO", default=0.5)
    enabled: bool = env("DEMO_ENABLED", default=False)
    regions: list[str] = env("DEMO_REGIONS", default=["USD"])
    token: Secret | None = env("DEMO_TOKEN", "LEGACY_TOKEN", default=None)


def test_values_are_cast_and_aliases_are_read() -> None:
    settings = load(DemoSettings, {
        "DEMO_URL": "postgres://u:pw@h/db", "DEMO_PORT": "9000", "DEMO_ENABLED": "yes",
        "DEMO_REGIONS": "USD, GBP,EUR", "LEGACY_TOKEN": "t0ken",
    })
    assert settings.port == 9000 and settings.enabled is True
    assert settings.regions == ["USD", "GBP", "EUR"]
    assert settings.token is not None and settings.token.reveal() == "t0ken"
    assert "t0ken" not in repr(settings) and "pw" not in repr(settings)


def test_every_problem_is_reported_at_once_without_secret_values() -> None:
    with pytest.raises(ConfigError) as raised:
        load(DemoSettings, {"DEMO_PORT": "eighty", "DEMO_ENABLED": "maybe"})
    message = str(raised.value)
    assert "DEMO_URL is required" in message
    assert "DEMO_PORT='eighty' is invalid" in message
    assert "DEMO_ENABLED='maybe' is invalid" in message


def test_redaction_masks_credentials_in_text_and_fields() -> None:
    text = redact_text(
        "GET https://api.example.com/x?api_key=abc123&page=2 Authorization: Bearer eyJhbGc.x.y "
        "postgresql://user:s3cret@db:5432/app"
    )
    assert "abc123" not in text and "eyJhbGc" not in text and "s3cret" not in text
    assert "page=2" in text and "user" in text
    fields = redact({"consumer_secret": "xyz", "nested": {"Authorization": "Basic Zm9v"}, "n": 1})
    assert fields == {"consumer_secret": MASK, "nested": {"Authorization": MASK},
                      "n": 1}
