"""The scheduler's own settings (the jobs themselves come from the jobs file, see config.py)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from shared.config import ConfigError, env, non_negative, one_of, positive, positive_int

__all__ = ["DEFAULT_JOBS_FILE", "SchedulerSettings"]

DEFAULT_JOBS_FILE = Path(__file__).parent / "jobs.toml"


@dataclass(frozen=True)
class SchedulerSettings:
    jobs_file: str = env(
        "SCHEDULER_JOBS_FILE", default=str(DEFAULT_JOBS_FILE),
        help="TOML (.toml) or YAML (.yaml/.yml) file of jobs",
    )
    target_check: str = env(
        "SCHEDULER_TARGET_CHECK", default="warn", parse=one_of("off", "warn", "strict"),
        help="at start, check every enabled job's target answers: warn (log), strict (refuse "
             "to start), off",
    )
    target_wait_seconds: float = env(
        "SCHEDULER_TARGET_WAIT_SECONDS", default=15.0, parse=non_negative,
        help="how long the start check waits for targets that are still starting",
    )
    poll_seconds: float = env(
        "SCHEDULER_POLL_SECONDS", default=1.0, parse=positive,
        help="longest sleep between two ticks (takeovers are looked for every tick)",
    )
    lease_seconds: float = env(
        "SCHEDULER_LEASE_SECONDS", default=30.0, parse=positive,
        help="a run whose replica has not renewed its lease for this long is taken over",
    )
    heartbeat_seconds: float = env(
        "SCHEDULER_HEARTBEAT_SECONDS", default=5.0, parse=positive,
        help="how often a replica renews the leases of its runs",
    )
    misfire_grace_seconds: float = env(
        "SCHEDULER_MISFIRE_GRACE_SECONDS", default=60.0, parse=non_negative,
        help="a due time fired this late still counts as on time; the least catch-up window",
    )
    run_retention_days: int = env(
        "SCHEDULER_RUN_RETENTION_DAYS", default=90, parse=positive_int,
        help="the scheduler's `prune-runs` sync scope deletes finished runs older than this",
    )
    replica: str = env(
        "SCHEDULER_REPLICA", default=f"{socket.gethostname()}:{os.getpid()}",
        help="this replica's name in claimed runs",
    )

    def __post_init__(self) -> None:
        # A lease that lasts no longer than the time between its renewals expires while its
        # replica is alive: another replica would take over (and follow) every run.
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ConfigError(
                f"SCHEDULER_HEARTBEAT_SECONDS={self.heartbeat_seconds:g} must be less than "
                f"SCHEDULER_LEASE_SECONDS={self.lease_seconds:g}"
            )
