"""A small service built on the shared runtime, for testing the runtime itself.

Run as a process with ``python -m tests.shared.probe_service`` (graceful-shutdown test).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path

from shared.processes import ManagedProcess, free_port
from shared.server import Runtime, ServiceDefinition, main
from shared.sync import SyncJob, SyncScope

SLOW_SCOPE_SECONDS = 2.0


class Gate:
    """Lets a test hold the `gated` scope open until it says so."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.entered = asyncio.Event()


GATE: dict[str, Gate] = {}


async def _quick(job: SyncJob) -> None:
    async with job.operation("customers") as op:
        op.records = 3
        op.counts.seen = 3
        op.counts.created = 1
        op.counts.unchanged = 2


async def _partial(job: SyncJob) -> None:
    async with job.operation("warehouses") as op:
        op.records = 2
    async with job.operation("products"):
        raise RuntimeError("upstream said no: token=abc123")


async def _boom(job: SyncJob) -> None:
    raise RuntimeError("password=hunter2 leaked?")


async def _slow(job: SyncJob) -> None:
    for step in range(4):
        await asyncio.sleep(SLOW_SCOPE_SECONDS / 4)
        job.progress((step + 1) / 4, f"step {step + 1} of 4")


async def _gated(job: SyncJob) -> None:
    gate = GATE.setdefault("gated", Gate())
    gate.entered.set()
    await asyncio.wait_for(gate.opened.wait(), 30)
    job.progress(1.0, "opened")


async def setup(runtime: Runtime) -> None:
    runtime.sync.add(SyncScope("quick", _quick), default=True)
    runtime.sync.add(SyncScope("partial", _partial))
    runtime.sync.add(SyncScope("boom", _boom))
    runtime.sync.add(SyncScope("slow", _slow))
    runtime.sync.add(SyncScope("gated", _gated, locks=("gated", "shared")))
    runtime.sync.add(SyncScope("also_shared", _quick, locks=("shared",)))


SERVICE = ServiceDefinition(name="probe", default_port=0, setup=setup)

ROOT = Path(__file__).resolve().parents[2]


def start_process(environ: Mapping[str, str], log_dir: Path) -> tuple[ManagedProcess, str]:
    """This service as a process of its own on a free port (metrics off), started but not yet
    serving: its process and its address."""
    port = free_port()
    env = {**environ, "SYNCSUITE_GRPC_PORT": str(port), "SYNCSUITE_METRICS_PORT": "-1"}
    process = ManagedProcess("probe", [sys.executable, "-m", "tests.shared.probe_service"], env,
                             log_dir / "probe.log", cwd=ROOT).start()
    return process, f"127.0.0.1:{port}"

if __name__ == "__main__":
    main(SERVICE)
