"""Settings from the environment: typed, validated at once, secrets never printed."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

import pytest

from shared.config import (
    ConfigError,
    Secret,
    env,
    load,
    non_negative,
    one_of,
    port,
    positive,
    positive_int,
    resolve_data_source,
)
from shared.redaction import MASK, redact, redact_text
from shared.settings import METRICS_OFF, RuntimeSettings
from tests.conftest import ADMIN_TOKEN, JWT_SECRET


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


RUNTIME_REQUIRED = {"DATABASE_URL": "postgresql://app@db:5432/app", "REDIS_URL": "redis://cache/0"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SYNCSUITE_DB_POOL_SIZE", "0"),
        ("SYNCSUITE_DB_POOL_SIZE", "-3"),
        ("SYNCSUITE_DB_POOL_SIZE", "ten"),
        ("SYNCSUITE_SHUTDOWN_GRACE", "-5"),
        ("SYNCSUITE_SHUTDOWN_GRACE", "nan"),
        ("SYNCSUITE_SHUTDOWN_GRACE", "inf"),
        ("SYNCSUITE_MIGRATION_LOCK_TIMEOUT", "0"),
        ("SYNCSUITE_MIGRATION_TIMEOUT", "inf"),
        ("SYNCSUITE_GRPC_PORT", "70000"),
        ("SYNCSUITE_GRPC_PORT", "-1"),
        ("SYNCSUITE_METRICS_PORT", "99999"),
        ("SYNCSUITE_METRICS_PORT", "-7"),
        ("SYNCSUITE_LOG_FORMAT", "xml"),
        ("SYNCSUITE_LOG_LEVEL", "loud"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "mysql://app:s3cret-pw@db/app"),
        ("REDIS_URL", "http://:s3cret-pw@cache:6379"),
        ("SYNCSUITE_ADMIN_TOKEN", "s3cret-pw"),
        ("SYNCSUITE_JWT_SECRET", "s3cret-pw-but-31-bytes-long-xyz"),
        ("SYNCSUITE_DATA_KEY", "s3cret-pw"),
        ("SYNCSUITE_DATA_KEY", "c2hvcnQta2V5LW9mLTI0LWJ5dGVzLi4u"),  # base64 of 24 bytes
    ],
)
def test_a_bad_runtime_setting_is_refused_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(RuntimeSettings, {**RUNTIME_REQUIRED, variable: value})
    message = str(raised.value)
    assert f"{variable}=" in message and "is invalid" in message
    assert "s3cret-pw" not in message


def test_the_values_the_suite_runs_with_are_accepted() -> None:
    made_by_make_run = secrets.token_urlsafe(32)  # admin token, JWT secret and data key alike
    settings = load(RuntimeSettings, {
        **RUNTIME_REQUIRED,
        "SYNCSUITE_ADMIN_TOKEN": ADMIN_TOKEN, "SYNCSUITE_JWT_SECRET": JWT_SECRET,
        "SYNCSUITE_DATA_KEY": made_by_make_run,
        "SYNCSUITE_GRPC_PORT": "0", "SYNCSUITE_METRICS_PORT": "-1",
        "SYNCSUITE_SHUTDOWN_GRACE": "0", "SYNCSUITE_LOG_LEVEL": "WARNING",
    })
    assert (settings.grpc_port, settings.metrics_port) == (0, METRICS_OFF)
    assert (settings.shutdown_grace_seconds, settings.log_level) == (0.0, "warning")
    for admin_token, jwt_secret, data_key in [
        (made_by_make_run, made_by_make_run, made_by_make_run),
        # docker-compose's .env: openssl rand -hex 32, and -base64 32 for the data key
        (secrets.token_hex(32), secrets.token_hex(32),
         base64.b64encode(secrets.token_bytes(32)).decode()),
    ]:
        load(RuntimeSettings, {**RUNTIME_REQUIRED, "SYNCSUITE_ADMIN_TOKEN": admin_token,
                               "SYNCSUITE_JWT_SECRET": jwt_secret, "SYNCSUITE_DATA_KEY": data_key})
    for url in ("postgres://app@db/app", "postgresql:///app?host=/run/postgresql"):
        load(RuntimeSettings, {**RUNTIME_REQUIRED, "DATABASE_URL": url})
    for url in ("rediss://:pw@cache:6380/1", "unix:///run/redis.sock?db=2"):
        load(RuntimeSettings, {**RUNTIME_REQUIRED, "REDIS_URL": url})


def test_new_parsers_refuse_what_is_not_a_port_or_a_duration() -> None:
    assert port("0") == 0 and port("65535") == 65535
    for raw in ("65536", "-1"):
        with pytest.raises(ValueError, match="0 to 65535"):
            port(raw)
    assert non_negative("0") == 0.0 and positive("0.5") == 0.5
    for parse in (non_negative, positive):
        for raw in ("nan", "inf", "-inf"):
            with pytest.raises(ValueError, match="finite number"):
                parse(raw)
    with pytest.raises(ValueError, match="must not be negative"):
        non_negative("-1")
    with pytest.raises(ValueError, match="greater than 0"):
        positive("0")
