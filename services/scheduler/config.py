"""Jobs from a TOML or YAML file, with environment overrides, strictly validated.

File layout (``jobs.toml`` ships the defaults)::

    [defaults]                      # optional, applies to every job
    time_zone = "Europe/Paris"
    [jobs.netsuite-customers]
    target = "catalog"              # a suite service name, or host:port
    scope = "customers"
    cron = "0 23 * * *"

Overrides: ``SCHEDULER_JOB_<NAME>_<FIELD>`` where NAME is the job name in upper case with
``-`` and ``.`` as ``_`` and FIELD one of the field names in upper case (e.g.
``SCHEDULER_JOB_SHIPSTATION_CRON="*/10 * * * *"``, ``SCHEDULER_JOB_ZOHO_PROJECTS_ENABLED=false``).
A ``SCHEDULER_JOB_…`` variable that names no job or no field is an error, so a typo never goes
unnoticed. Every problem is reported at once, each naming its job.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from services.scheduler.cron import CronSchedule
from services.suite import SUITE
from shared.config import ConfigError

__all__ = ["FIELDS", "JobSpec", "load_jobs", "parse_duration", "parse_jobs"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_ENV_PREFIX = "SCHEDULER_JOB_"
# Longer durations mean nothing for a job and, added to a date, overflow Python's datetime.
_LONGEST_DURATION = timedelta(days=365)

# field -> (kind, default); "required" has no default.
FIELDS: dict[str, tuple[str, Any]] = {
    "description": ("str", ""),
    "target": ("str", None),
    "scope": ("str", None),
    "cron": ("str", None),
    "time_zone": ("str", "UTC"),
    "timeout": ("duration", timedelta(minutes=30)),
    "overlap": ("str", "forbid"),
    "enabled": ("bool", True),
    "catch_up_window": ("duration", timedelta(hours=1)),
    "jitter": ("duration", timedelta(0)),
    "full": ("bool", False),
}


@dataclass(frozen=True)
class JobSpec:
    name: str
    target: str
    target_address: str
    scope: str
    schedule: CronSchedule
    timeout: timedelta
    overlap: str  # "forbid" | "allow"
    enabled: bool
    catch_up_window: timedelta
    jitter: timedelta
    full: bool = False
    description: str = ""

    @property
    def cron(self) -> str:
        return self.schedule.expression

    @property
    def time_zone(self) -> str:
        return self.schedule.time_zone


def parse_duration(value: Any) -> timedelta:
    """Seconds as a number, or a string such as ``90s``, ``15m``, ``2h``, ``1d``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration such as 30s, 15m, 2h")
    if math.isnan(seconds):
        raise ValueError(f"{value!r} is not a duration such as 30s, 15m, 2h")
    if seconds < 0:
        raise ValueError("must not be negative")
    if seconds > _LONGEST_DURATION.total_seconds():
        raise ValueError(f"{value!r} is longer than {_LONGEST_DURATION.days}d")
    return timedelta(seconds=seconds)


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{value!r} is not true or false")


def _convert(field: str, value: Any) -> Any:
    kind = FIELDS[field][0]
    if kind == "duration":
        return parse_duration(value)
    if kind == "bool":
        return _parse_bool(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value.strip()


def env_key(job: str, field: str) -> str:
    return f"{_ENV_PREFIX}{re.sub(r'[-.]', '_', job).upper()}_{field.upper()}"


def _resolve_target(target: str, environ: Mapping[str, str]) -> str:
    for member in SUITE:
        if target == member.name:
            return environ.get(member.address_env) or f"127.0.0.1:{member.grpc_port}"
    if _ADDRESS.match(target):
        return target
    names = ", ".join(member.name for member in SUITE)
    raise ValueError(f"unknown target {target!r}: expected one of {names} or host:port")


def _build(name: str, raw: dict[str, Any], environ: Mapping[str, str]) -> JobSpec:
    """One job from its merged fields; raises ValueError with the first problem."""
    values: dict[str, Any] = {}
    for field, (_kind, default) in FIELDS.items():
        if field in raw:
            try:
                values[field] = _convert(field, raw[field])
            except ValueError as error:
                raise ValueError(f"{field}: {error}") from None
        elif default is None:
            raise ValueError(f"{field} is required")
        else:
            values[field] = default
    if not values["scope"]:
        raise ValueError("scope: must not be empty")
    if values["overlap"] not in {"forbid", "allow"}:
        raise ValueError(f"overlap: {values['overlap']!r} is not forbid or allow")
    if values["timeout"] <= timedelta(0):
        raise ValueError("timeout: must be greater than 0")
    try:
        schedule = CronSchedule(values["cron"], values["time_zone"])
    except ValueError as error:
        field = "time_zone" if "time zone" in str(error) else "cron"
        raise ValueError(f"{field}: {error}") from None
    try:
        address = _resolve_target(values["target"], environ)
    except ValueError as error:
        raise ValueError(f"target: {error}") from None
    return JobSpec(
        name=name, target=values["target"], target_address=address, scope=values["scope"],
        schedule=schedule, timeout=values["timeout"], overlap=values["overlap"],
        enabled=values["enabled"], catch_up_window=values["catch_up_window"],
        jitter=values["jitter"], full=values["full"], description=values["description"],
    )


def _name_problem(name: object) -> str:
    """Why ``name`` cannot name a job ('' when it can)."""
    if not isinstance(name, str):
        # YAML reads `2024:` or `true:` as a number or a boolean, not as a name.
        return f"the name must be text (quote it in the file: '{name}')"
    if not _NAME.match(name):
        return "the name must be lower case letters, digits, '-', '_' or '.' (at most 63)"
    return ""


def parse_jobs(document: Mapping[str, Any], environ: Mapping[str, str],
               source: str = "jobs file") -> list[JobSpec]:
    """Jobs from a parsed document plus ``SCHEDULER_JOB_*`` overrides; ConfigError lists every
    problem, each naming its job."""
    problems: list[str] = []
    # YAML keys may be numbers, booleans or null: every key is shown and sorted as text.
    unknown_sections = set(document) - {"defaults", "jobs"}
    if unknown_sections:
        sections = ", ".join(sorted(map(str, unknown_sections)))
        problems.append(f"{source}: unknown section(s) {sections} (expected defaults, jobs)")
    defaults = document.get("defaults") or {}
    jobs = document.get("jobs") or {}
    if not isinstance(defaults, dict) or not isinstance(jobs, dict):
        raise ConfigError(f"{source}: 'defaults' and 'jobs' must be tables of fields")
    for field in sorted(set(defaults) - set(FIELDS), key=str):
        problems.append(f"{source}: defaults: unknown field {field!r}")
    named: dict[str, Any] = {}
    for name, fields in jobs.items():
        problem = _name_problem(name)
        if problem:
            problems.append(f"job {name!r}: {problem}")
        else:
            named[name] = fields
    env_names: dict[str, str] = {}
    for name in named:
        prefix = env_key(name, "")
        if prefix in env_names:
            problems.append(f"job {name!r}: its environment name clashes with job "
                            f"{env_names[prefix]!r}")
        env_names[prefix] = name
    known_env = {env_key(name, field): (name, field) for name in named for field in FIELDS}
    overrides: dict[str, dict[str, str]] = {}
    for key, value in environ.items():
        if key in known_env:
            name, field = known_env[key]
            overrides.setdefault(name, {})[field] = value
        elif key.startswith(_ENV_PREFIX):
            problems.append(f"{key} names no job field (jobs: {', '.join(named) or 'none'}; "
                            f"fields: {', '.join(f.upper() for f in FIELDS)})")
    specs: list[JobSpec] = []
    for name, fields in named.items():
        if not isinstance(fields, dict):
            problems.append(f"job {name!r}: expected a table of fields")
            continue
        unknown = sorted(set(fields) - set(FIELDS), key=str)
        if unknown:
            problems.append(f"job {name!r}: unknown field(s) {', '.join(map(repr, unknown))}"
                            f" (known: {', '.join(FIELDS)})")
            continue
        merged = {**{k: v for k, v in defaults.items() if k in FIELDS}, **fields,
                  **overrides.get(name, {})}
        try:
            specs.append(_build(name, merged, environ))
        except ValueError as error:
            problems.append(f"job {name!r}: {error}")
    if problems:
        raise ConfigError("invalid scheduler jobs: " + "; ".join(problems))
    return specs


def load_jobs(path: str | Path, environ: Mapping[str, str]) -> list[JobSpec]:
    """Jobs from the TOML (.toml) or YAML (.yaml/.yml) file at ``path``."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read the jobs file {file}: {error.strerror}") from None
    try:
        if file.suffix in {".yaml", ".yml"}:
            document = yaml.safe_load(text) or {}
        elif file.suffix == ".toml":
            document = tomllib.loads(text)
        else:
            raise ConfigError(f"jobs file {file}: expected a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"jobs file {file} is not valid: {error}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"jobs file {file}: expected a mapping with 'defaults' and 'jobs'")
    return parse_jobs(document, environ, source=str(file.name))
