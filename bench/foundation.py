"""The foundation: the Ping baseline of a real service process (the scheduler, with no jobs) at
8 and 64 callers, Health/Check as a ratio to it, and Ping on the same service started in the
bench process (``in_process``) with the client in a worker process."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import (
    Call,
    ClientMode,
    Options,
    Report,
    as_process,
    at_least,
    at_most,
    bench_backends,
    in_process,
    ping,
)
from services.scheduler.server import SERVICE

# The scheduler with no jobs and no start-up check of its targets: a server doing nothing else.
QUIET = {"SCHEDULER_JOBS_FILE": str(Path(__file__).with_name("no_jobs.toml")),
         "SCHEDULER_TARGET_CHECK": "off"}


def health_check(channel: grpc.aio.Channel) -> Call:
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest()
    return lambda: stub.Check(request, timeout=10)


async def run(report: Report, options: Options) -> None:
    async with bench_backends() as backend_env:
        env = {**backend_env, **QUIET}
        with as_process("services.scheduler", env) as address:
            # Ping and Health/Check in alternating slices: Ping's figures are the baseline's.
            health = await options.compare(address, health_check)
            report.add_stats("Ping ×8", health.baseline, p99=at_most(5, "ms"),
                             throughput=at_least(2500, "calls/s"))
            report.add_stats("Ping ×64", await options.measure(address, ping, concurrency=64))
            report.add_stats("Health/Check ×8", health.candidate)
            report.add_comparison("Health/Check ×8", health,
                                  throughput=at_least(0.9, "×"), p99=at_most(1.2, "×"))
        # The server on this event loop: the client runs in a worker process, off that loop.
        async with in_process(SERVICE, env) as address:
            local = await replace(options, client=ClientMode.PROCESSES).measure(address, ping)
            report.add_stats("Ping ×8, in_process server", local,
                             notes="client in a worker process")
