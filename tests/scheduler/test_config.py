"""The jobs file: shipped defaults, overrides and the messages a bad configuration gives."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.scheduler.config import load_jobs, parse_jobs
from services.scheduler.settings import DEFAULT_JOBS_FILE
from shared.config import ConfigError

GOOD = {"target": "pricing", "scope": "prices", "cron": "0 */6 * * *"}


def test_shipped_defaults_have_the_seed_timings() -> None:
    jobs = {job.name: job for job in load_jobs(DEFAULT_JOBS_FILE, {})}
    expected = {
        "netsuite-customers": ("catalog", "customers", "0 23 * * *"),
        "netsuite-items": ("catalog", "items", "0 23 * * *"),
        "customer-kpis": ("catalog", "kpis", "0 */6 * * *"),
        "stockx-prices": ("pricing", "prices", "0 */6 * * *"),
        "shipstation": ("shipping", "all", "*/30 * * * *"),
        "zoho-projects": ("timeentries", "projects", "30 2 * * *"),
        "pending-time-entries": ("timeentries", "entries", "*/15 * * * *"),
    }
    for name, (target, scope, cron) in expected.items():
        assert (jobs[name].target, jobs[name].scope, jobs[name].cron) == (target, scope, cron)
        assert jobs[name].time_zone == "Europe/Paris"
        assert jobs[name].overlap == "forbid"
    assert jobs["sync-log-pruning"].cron == "0 4 * * 0"  # weekly
    assert jobs["netsuite-customers"].target_address == "127.0.0.1:50051"


def test_targets_resolve_from_the_suite_addresses() -> None:
    jobs = parse_jobs({"jobs": {"p": GOOD, "direct": {**GOOD, "target": "10.0.0.7:6000"}}},
                      {"SYNCSUITE_PRICING_ADDRESS": "pricing.internal:7000"})
    assert [job.target_address for job in jobs] == ["pricing.internal:7000", "10.0.0.7:6000"]


def test_defaults_and_environment_overrides() -> None:
    document = {"defaults": {"time_zone": "Europe/Paris", "jitter": "30s"},
                "jobs": {"stockx-prices": GOOD, "other": {**GOOD, "scope": "x"}}}
    environ = {"SCHEDULER_JOB_STOCKX_PRICES_CRON": "*/5 * * * *",
               "SCHEDULER_JOB_STOCKX_PRICES_ENABLED": "false",
               "SCHEDULER_JOB_STOCKX_PRICES_TIMEOUT": "90",
               "SCHEDULER_JOB_OTHER_OVERLAP": "allow"}
    jobs = {job.name: job for job in parse_jobs(document, environ)}
    prices = jobs["stockx-prices"]
    assert (prices.cron, prices.enabled, prices.timeout) == (
        "*/5 * * * *", False, timedelta(seconds=90))
    assert prices.jitter == timedelta(seconds=30) and prices.time_zone == "Europe/Paris"
    assert jobs["other"].overlap == "allow" and jobs["other"].enabled


def test_yaml_files_load_too(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  prices:\n    target: pricing\n    scope: prices\n"
                    "    cron: '0 */6 * * *'\n    catch_up_window: 2h\n")
    [job] = load_jobs(path, {})
    assert job.catch_up_window == timedelta(hours=2)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({**GOOD, "crn": "x"}, "job 'bad': unknown field(s) 'crn'"),
        ({**GOOD, "cron": "0 25 * * *"}, "job 'bad': cron: invalid cron '0 25 * * *'"),
        ({**GOOD, "cron": "every day"}, "job 'bad': cron: invalid cron 'every day'"),
        ({**GOOD, "time_zone": "Europe/Pariss"}, "job 'bad': time_zone: unknown time zone"),
        ({**GOOD, "target": "nowhere"}, "job 'bad': target: unknown target 'nowhere'"),
        ({**GOOD, "overlap": "queue"}, "job 'bad': overlap: 'queue' is not forbid or allow"),
        ({**GOOD, "timeout": "soon"}, "job 'bad': timeout: 'soon' is not a duration"),
        ({**GOOD, "timeout": 0}, "job 'bad': timeout: must be greater than 0"),
        ({**GOOD, "enabled": "maybe"}, "job 'bad': enabled: 'maybe' is not true or false"),
        ({"target": "pricing", "cron": "* * * * *"}, "job 'bad': scope is required"),
        ({**GOOD, "cron": "0 0 30 2 *"}, "job 'bad': cron: '0 0 30 2 *' never fires"),
        ({**GOOD, "timeout": float("inf")}, "job 'bad': timeout: inf is longer than 365d"),
        ({**GOOD, "timeout": "99999999999d"},
         "job 'bad': timeout: '99999999999d' is longer than 365d"),
        ({**GOOD, "jitter": float("nan")}, "job 'bad': jitter: nan is not a duration"),
    ],
    ids=["unknown-field", "cron-range", "cron-words", "zone", "target", "overlap", "duration",
         "zero-timeout", "bool", "missing-scope", "never-fires", "infinite", "overflowing",
         "not-a-number"],
)
def test_invalid_jobs_are_refused_naming_the_job(fields: dict[str, object], message: str
                                                 ) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_jobs({"jobs": {"fine": GOOD, "bad": fields}}, {})
    assert message in str(raised.value)
    assert "'fine'" not in str(raised.value)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_jobs({"jobs": {"a": {**GOOD, "cron": "nope"}, "b": {**GOOD, "time_zone": "X/Y"}}},
                   {"SCHEDULER_JOB_C_CRON": "* * * * *"})
    text = str(raised.value)
    assert "job 'a': cron" in text and "job 'b': time_zone" in text
    assert "SCHEDULER_JOB_C_CRON names no job field" in text


def test_an_override_with_a_typo_is_refused() -> None:
    with pytest.raises(ConfigError, match="SCHEDULER_JOB_PRICES_CRONN names no job field"):
        parse_jobs({"jobs": {"prices": GOOD}}, {"SCHEDULER_JOB_PRICES_CRONN": "* * * * *"})
    with pytest.raises(ConfigError, match="job 'prices': cron: invalid cron"):
        parse_jobs({"jobs": {"prices": GOOD}}, {"SCHEDULER_JOB_PRICES_CRON": "61 * * * *"})


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the jobs file"):
        load_jobs(tmp_path / "missing.toml", {})
    broken = tmp_path / "jobs.toml"
    broken.write_text("[jobs.a\ncron = 1")
    with pytest.raises(ConfigError, match="is not valid"):
        load_jobs(broken, {})
    other = tmp_path / "jobs.json"
    other.write_text("{}")
    with pytest.raises(ConfigError, match=r"expected a \.toml, \.yaml or \.yml file"):
        load_jobs(other, {})
    with pytest.raises(ConfigError, match="unknown section"):
        parse_jobs({"job": {}}, {})


def test_a_malformed_yaml_file_is_a_config_error_naming_each_job(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    # YAML reads the name 2024 as a number and .inf as an infinite float.
    path.write_text("jobs:\n"
                    "  2024: {target: pricing, scope: prices, cron: '0 0 1 1 *'}\n"
                    "  forever: {target: pricing, scope: prices, cron: '* * * * *',"
                    " timeout: .inf}\n"
                    "  odd-fields: {target: pricing, scope: prices, cron: '* * * * *',"
                    " 1: x, crn: y}\n")
    with pytest.raises(ConfigError) as raised:
        load_jobs(path, {"SCHEDULER_JOB_FOREVER_JITTER": "1s"})
    text = str(raised.value)
    assert "job 2024: the name must be text (quote it in the file: '2024')" in text
    assert "job 'forever': timeout: inf is longer than 365d" in text
    assert "job 'odd-fields': unknown field(s) 1, 'crn'" in text
