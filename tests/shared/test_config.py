"""Settings from the environment: typed, validated at once, secrets never printed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from shared.config import (
    ConfigError,
    Secret,
    env,
    load,
    non_negative,
    one_of,
    positive,
    positive_int,
    resolve_data_source,
)
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
        "postgresql://user:s3cret@db:5432/app redis://:hunter2@cache:6379/0"
    )
    assert "abc123" not in text and "eyJhbGc" not in text and "s3cret" not in text
    assert "hunter2" not in text and "cache:6379/0" in text  # Redis URLs have no user
    assert "page=2" in text and "user" in text
    fields = redact({"consumer_secret": "xyz", "nested": {"Authorization": "Basic Zm9v"}, "n": 1})
    assert fields == {"consumer_secret": MASK, "nested": {"Authorization": MASK},
                      "n": 1}


def test_shared_parsers_name_what_they_expect() -> None:
    mode = one_of("off", "warn", "strict")
    assert mode(" WARN ") == "warn"
    with pytest.raises(ValueError, match="expected off, warn or strict"):
        mode("loud")
    assert positive("0.5") == 0.5 and positive_int("3") == 3
    for parse, raw in ((positive, "0"), (positive_int, "-1")):
        with pytest.raises(ValueError, match="greater than 0"):
            parse(raw)
    assert non_negative("0") == 0.0 and non_negative("2.5") == 2.5
    with pytest.raises(ValueError, match="must not be negative"):
        non_negative("-0.1")


@pytest.mark.parametrize(
    ("choice", "configured", "active"),
    [("auto", True, "stockx"), ("auto", False, "sandbox"), ("sandbox", True, "sandbox"),
     ("stockx", True, "stockx")],
)
def test_the_data_source_is_the_real_api_only_with_credentials(
    choice: str, configured: bool, active: str
) -> None:
    assert resolve_data_source(choice, real="stockx", configured=configured,
                               variable="STOCKX_DATA_SOURCE", required="STOCKX_API_KEY") == active


def test_asking_for_the_real_api_without_credentials_names_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="STOCKX_DATA_SOURCE=stockx needs STOCKX_API_KEY"):
        resolve_data_source("stockx", real="stockx", configured=False,
                            variable="STOCKX_DATA_SOURCE", required="STOCKX_API_KEY")
