"""The scheduler's settings are range-checked at start, each problem naming its variable."""

from __future__ import annotations

import pytest

from services.scheduler.settings import SchedulerSettings
from shared.config import ConfigError, load


def test_the_defaults_load() -> None:
    settings = load(SchedulerSettings, {})
    assert settings.heartbeat_seconds < settings.lease_seconds
    assert settings.run_retention_days == 90


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        # A negative retention would make prune-runs delete every finished run.
        ("SCHEDULER_RUN_RETENTION_DAYS", "-1", "must be greater than 0"),
        ("SCHEDULER_RUN_RETENTION_DAYS", "0", "must be greater than 0"),
        ("SCHEDULER_RUN_RETENTION_DAYS", "1.5", "invalid literal"),
        ("SCHEDULER_MISFIRE_GRACE_SECONDS", "-5", "must not be negative"),
        ("SCHEDULER_TARGET_WAIT_SECONDS", "-1", "must not be negative"),
        # nan would pass the heartbeat < lease check (every comparison with nan is false)
        ("SCHEDULER_HEARTBEAT_SECONDS", "nan", "must be a finite number"),
        ("SCHEDULER_LEASE_SECONDS", "inf", "must be a finite number"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load(SchedulerSettings, {variable: value})
    assert f"{variable}='{value}' is invalid: {message}" in str(raised.value)


@pytest.mark.parametrize(("heartbeat", "lease"), [("30", "30"), ("10", "5")])
def test_the_heartbeat_must_be_shorter_than_the_lease(heartbeat: str, lease: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(SchedulerSettings, {"SCHEDULER_HEARTBEAT_SECONDS": heartbeat,
                                 "SCHEDULER_LEASE_SECONDS": lease})
    assert str(raised.value) == (f"SCHEDULER_HEARTBEAT_SECONDS={heartbeat} must be less than "
                                 f"SCHEDULER_LEASE_SECONDS={lease}")
    assert load(SchedulerSettings, {"SCHEDULER_HEARTBEAT_SECONDS": "0.5",
                                    "SCHEDULER_LEASE_SECONDS": "2"}).lease_seconds == 2
