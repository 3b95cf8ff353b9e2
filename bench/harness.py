"""The benchmark harness: drive calls in a closed loop, summarise latencies, compare them with
the Ping baseline, start servers and backends, and report figures (see bench/README.md).

Two ways to run the callers against a server (:class:`ClientMode`):

* ``inline`` (the default): every caller is a task on this process's event loop, all sharing
  one channel. Against a server in its own process this measures the same as a separate client
  process: on the 2-core box the server's loop is saturated (~100% of a core) while the client
  loop uses ~50-60% of one, so the client is not the bottleneck (bench/README.md has figures).
* ``processes``: the callers are split over ``workers`` spawned processes, each with its own
  event loop and channel, and their latency samples merged. Use it when the server runs in this
  process (``in_process``), so that the client stays off the server's loop. More than one
  worker buys some throughput only under outside load, with no better p99 and 50-700 ms stalls
  in most runs (3 busy processes on 2 cores).

Factories (:data:`CallFactory`) are module-level functions so that both modes can use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import multiprocessing
import os
import platform
import queue
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

import grpc
from syncsuite.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc

from shared.backends import BackendStack
from shared.processes import ManagedProcess, ProcessExited, free_port, wait_for_health
from shared.scratch import scratch_database, scratch_redis_db
from shared.server import ServiceDefinition, running_service

__all__ = [
    "BenchError",
    "Call",
    "CallFactory",
    "ClientMode",
    "Comparison",
    "Figure",
    "LatencyStats",
    "Options",
    "Report",
    "Samples",
    "Target",
    "admin_metadata",
    "as_process",
    "at_least",
    "at_most",
    "bench_backends",
    "compare",
    "drive",
    "in_process",
    "machine_info",
    "measure",
    "percentile",
    "ping",
    "speedup",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RUN_DIR = ROOT / ".run" / "bench"

Call = Callable[[], Awaitable[Any]]
"""One call to measure, e.g. ``lambda: stub.Ping(request, timeout=5)``."""
CallFactory = Callable[[grpc.aio.Channel], Call]
"""Builds the call from an open channel. Must be picklable (a module-level function or a
``functools.partial`` of one) for the ``processes`` client mode."""


class BenchError(RuntimeError):
    """Every measured call failed, or a server or client worker did not start."""


# -- statistics --------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted values, interpolating linearly between the two
    nearest ranks (as numpy's default); 0.0 for no values."""
    if not ordered:
        return 0.0
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LatencyStats:
    calls: int  # successful measured calls
    errors: int
    seconds: float  # length of the measured window
    throughput: float  # successful calls per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    server_cpu_us: float | None = None  # the server process's CPU per call, when known

    def summary(self) -> str:
        return (f"{self.throughput:,.0f} calls/s, p50 {self.p50_ms:.2f} ms, "
                f"p99 {self.p99_ms:.2f} ms, max {self.max_ms:.1f} ms, "
                f"{self.calls} calls, {self.errors} errors in {self.seconds:.1f} s")


@dataclass
class Samples:
    """Raw measurements of one closed-loop run (latencies in seconds); picklable, mergeable."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    first_error: str | None = None
    server_cpu: float | None = None  # seconds of the server's CPU in the window, when known

    @classmethod
    def merge(cls, parts: Sequence[Samples], *, sequential: bool = False) -> Samples:
        """Runs made side by side (their windows overlap: the longest counts) or, if
        ``sequential``, one after the other (their windows add up)."""
        windows = [part.seconds for part in parts]
        cpus = [part.server_cpu for part in parts if part.server_cpu is not None]
        return cls(
            latencies=[value for part in parts for value in part.latencies],
            errors=sum(part.errors for part in parts),
            seconds=sum(windows) if sequential else max(windows, default=0.0),
            first_error=next((p.first_error for p in parts if p.first_error), None),
            # one server's CPU over the parts' windows only if they came one after another
            server_cpu=sum(cpus) if sequential and parts and len(cpus) == len(parts) else None,
        )

    def stats(self) -> LatencyStats:
        if not self.latencies and self.errors:
            raise BenchError(f"all {self.errors} calls failed; the first: {self.first_error}")
        ordered = sorted(value * 1000 for value in self.latencies)
        count = len(ordered)
        return LatencyStats(
            calls=count,
            errors=self.errors,
            seconds=self.seconds,
            throughput=count / self.seconds if self.seconds > 0 else 0.0,
            p50_ms=percentile(ordered, 50),
            p90_ms=percentile(ordered, 90),
            p99_ms=percentile(ordered, 99),
            max_ms=ordered[-1] if ordered else 0.0,
            mean_ms=sum(ordered) / count if count else 0.0,
            server_cpu_us=(self.server_cpu * 1e6 / (count + self.errors)
                           if self.server_cpu is not None and count + self.errors else None),
        )


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


@dataclass(frozen=True)
class Comparison:
    """A candidate next to the baseline (Ping on the same server, in the same run)."""

    candidate: LatencyStats
    baseline: LatencyStats
    baseline_name: str = "Ping"

    @property
    def throughput_ratio(self) -> float:
        """Candidate calls/s as a fraction of the baseline's (1.0 = as fast as the baseline)."""
        return _ratio(self.candidate.throughput, self.baseline.throughput)

    @property
    def p99_ratio(self) -> float:
        """Candidate p99 as a multiple of the baseline's (1.0 = no slower than the baseline)."""
        return _ratio(self.candidate.p99_ms, self.baseline.p99_ms)

    @property
    def server_cpu_ratio(self) -> float | None:
        """The server's CPU per candidate call as a multiple of its CPU per baseline call."""
        if self.candidate.server_cpu_us is None or self.baseline.server_cpu_us is None:
            return None
        return _ratio(self.candidate.server_cpu_us, self.baseline.server_cpu_us)


def speedup(new: LatencyStats, old: LatencyStats) -> float:
    """``new``'s calls/s over ``old``'s, both measured side by side (> 1: ``new`` is faster)."""
    return _ratio(new.throughput, old.throughput)


# -- driving calls -----------------------------------------------------------------------------


async def _collect(
    call: Call, concurrency: int, duration: float, warmup: float, max_calls: int | None,
    server_cpu: Callable[[], float] | None = None,
) -> Samples:
    """``concurrency`` callers each call ``call`` again as soon as it returns. Calls started
    after the warmup are measured, until ``duration`` has passed or ``max_calls`` were made;
    the window ends when the last measured call returns. ``server_cpu`` (the server process's
    CPU seconds so far) is read when the window opens and when it ends."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    # The callers' own full collections are not the server's latency: what this process holds
    # (sandboxes, seeded data, earlier samples) is moved out of the collector's sight first.
    gc.collect()  # garbage frozen now would never be freed
    gc.freeze()
    samples = Samples()
    clock = time.perf_counter
    begin = clock() + warmup
    end = begin + duration
    started_measured = 0
    cpu_at_begin: list[float] = []
    if server_cpu is not None:
        asyncio.get_running_loop().call_later(warmup, lambda: cpu_at_begin.append(server_cpu()))

    async def caller() -> None:
        nonlocal started_measured
        while (started := clock()) < end:
            measured = started >= begin
            if measured:
                if max_calls is not None and started_measured >= max_calls:
                    return
                started_measured += 1
            try:
                await call()
            except Exception as error:
                samples.first_error = samples.first_error or repr(error)
                if measured:
                    samples.errors += 1
                continue
            if measured:
                samples.latencies.append(clock() - started)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    samples.seconds = max(clock() - begin, 0.0)
    if cpu_at_begin:
        samples.server_cpu = server_cpu() - cpu_at_begin[0]  # type: ignore[misc]
    return samples


async def drive(
    call: Call,
    *,
    concurrency: int = 8,
    duration: float = 3.0,
    warmup: float = 0.5,
    max_calls: int | None = None,
) -> LatencyStats:
    """Runs ``concurrency`` callers of ``call`` in a closed loop on this event loop (e.g. over
    an already-open channel) and summarises the calls started after ``warmup``. Errors are
    counted; :class:`BenchError` only if every measured call failed."""
    return (await _collect(call, concurrency, duration, warmup, max_calls)).stats()


def ping(channel: grpc.aio.Channel) -> Call:
    """The baseline: DiagnosticsService/Ping, public and doing nothing, on every server."""
    stub = diagnostics_pb2_grpc.DiagnosticsServiceStub(channel)
    request = diagnostics_pb2.PingRequest()
    return lambda: stub.Ping(request, timeout=10)


class ClientMode(StrEnum):
    INLINE = "inline"
    PROCESSES = "processes"


DEFAULT_CLIENT = ClientMode.INLINE
DEFAULT_WORKERS = 1


async def _open(address: str) -> grpc.aio.Channel:
    channel = grpc.aio.insecure_channel(address)
    try:
        await asyncio.wait_for(channel.channel_ready(), 15)
    except BaseException:
        await channel.close()
        raise
    return channel


def _worker(
    address: str, factory: CallFactory, concurrency: int, duration: float, warmup: float,
    max_calls: int | None, barrier: Any, results: Any,
) -> None:
    """A client worker process: connect, wait for the others, measure, send the samples."""

    async def measure_here() -> Samples:
        channel = await _open(address)
        try:
            call = factory(channel)
            await asyncio.to_thread(barrier.wait, 60)
            return await _collect(call, concurrency, duration, warmup, max_calls)
        finally:
            await channel.close()

    try:
        results.put(asyncio.run(measure_here()))
    except BaseException as error:
        barrier.abort()
        results.put(f"client worker {os.getpid()} failed: {error!r}")


def _shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal shares, the larger first."""
    return [total // parts + (index < total % parts) for index in range(parts)]


async def _collect_in_processes(
    address: str, factory: CallFactory, workers: int, concurrency: int, duration: float,
    warmup: float, max_calls: int | None,
) -> Samples:
    context = multiprocessing.get_context("spawn")  # no inherited grpc state
    shares = _shares(concurrency, max(1, min(workers, concurrency)))
    budgets = [None] * len(shares) if max_calls is None else _shares(max_calls, len(shares))
    barrier = context.Barrier(len(shares))
    results = context.Queue()
    processes = [
        context.Process(
            target=_worker, daemon=True, name=f"bench-client-{index}",
            args=(address, factory, share, duration, warmup, budget, barrier, results),
        )
        for index, (share, budget) in enumerate(zip(shares, budgets, strict=True))
    ]
    parts: list[Samples] = []
    try:
        for process in processes:
            process.start()  # pickles the factory: a lambda fails here, at once
        while len(parts) < len(processes):
            alive = any(process.is_alive() for process in processes)
            try:
                answer = await asyncio.to_thread(results.get, True, 0.5 if alive else 2.0)
            except queue.Empty:
                if alive:
                    continue
                raise BenchError("a client worker exited without a result") from None
            if isinstance(answer, str):
                raise BenchError(answer)
            parts.append(answer)
    finally:
        for process in processes:
            if process.pid is None:
                continue  # never started
            await asyncio.to_thread(process.join, 5)
            if process.is_alive():
                process.terminate()
                await asyncio.to_thread(process.join, 5)
        results.close()
    return Samples.merge(parts)


PRIME_SECONDS = 1.0
_primed: set[str] = set()


async def _prime(address: str) -> None:
    """Before the first measurement of a server, :data:`PRIME_SECONDS` of discarded Pings: a
    freshly started server does up to ~40% fewer calls/s in its first second."""
    if address not in _primed:
        _primed.add(address)
        channel = await _open(address)
        try:
            await _collect(ping(channel), 8, PRIME_SECONDS, 0.0, None)
        finally:
            await channel.close()


async def _samples(
    address: str, factory: CallFactory, *, concurrency: int, duration: float, warmup: float,
    max_calls: int | None, mode: ClientMode, workers: int,
) -> Samples:
    await _prime(address)
    if mode is ClientMode.PROCESSES:
        return await _collect_in_processes(
            address, factory, workers, concurrency, duration, warmup, max_calls
        )
    pid = _server_pids.get(address)
    channel = await _open(address)
    try:
        return await _collect(factory(channel), concurrency, duration, warmup, max_calls,
                              server_cpu=None if pid is None else partial(cpu_seconds, pid))
    finally:
        await channel.close()


async def measure(
    address: str,
    factory: CallFactory,
    *,
    concurrency: int = 8,
    duration: float = 3.0,
    warmup: float = 0.5,
    max_calls: int | None = None,
    mode: ClientMode = DEFAULT_CLIENT,
    workers: int = DEFAULT_WORKERS,
) -> LatencyStats:
    """Like :func:`drive`, against the server at ``address``, with the callers run as ``mode``
    says (``processes``: spread over ``workers`` processes, each with its own channel)."""
    return (await _samples(
        address, factory, concurrency=concurrency, duration=duration, warmup=warmup,
        max_calls=max_calls, mode=mode, workers=workers,
    )).stats()


async def compare(
    address: str,
    candidate: CallFactory,
    *,
    baseline: CallFactory = ping,
    baseline_name: str = "Ping",
    rounds: int = 3,
    concurrency: int = 8,
    duration: float = 3.0,
    warmup: float = 0.5,
    mode: ClientMode = DEFAULT_CLIENT,
    workers: int = DEFAULT_WORKERS,
) -> Comparison:
    """``candidate`` and ``baseline`` measured in ``rounds`` rounds of one slice each, of
    ``duration / rounds`` seconds, in the order baseline-candidate, candidate-baseline, ... so
    that the other load on a shared machine, and being measured first, weigh on both alike."""
    slices: tuple[list[Samples], list[Samples]] = ([], [])
    pairs = list(zip(slices, (baseline, candidate), strict=True))
    for round_ in range(rounds):
        for found, factory in pairs if round_ % 2 == 0 else reversed(pairs):
            found.append(await _samples(
                address, factory, concurrency=concurrency, duration=duration / rounds,
                warmup=warmup, max_calls=None, mode=mode, workers=workers,
            ))
    base, cand = (Samples.merge(found, sequential=True).stats() for found in slices)
    return Comparison(cand, base, baseline_name)


@dataclass(frozen=True)
class Options:
    """What ``python -m bench`` hands every suite: how long and how to measure."""

    quick: bool = False
    client: ClientMode = DEFAULT_CLIENT
    workers: int = DEFAULT_WORKERS
    duration: float = 3.0
    warmup: float = 0.5

    @classmethod
    def for_run(cls, quick: bool = False, **overrides: Any) -> Options:
        base = cls(quick=True, duration=0.4, warmup=0.1) if quick else cls()
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def _client(self) -> dict[str, Any]:
        return {"duration": self.duration, "warmup": self.warmup, "mode": self.client,
                "workers": self.workers}

    async def measure(
        self, address: str, factory: CallFactory, *, concurrency: int = 8,
        max_calls: int | None = None,
    ) -> LatencyStats:
        """:func:`measure` with this run's client mode and durations."""
        return await measure(address, factory, concurrency=concurrency, max_calls=max_calls,
                             **self._client())

    async def compare(
        self, address: str, candidate: CallFactory, *, baseline: CallFactory = ping,
        baseline_name: str = "Ping", concurrency: int = 8,
    ) -> Comparison:
        """:func:`compare` with this run's client mode and durations."""
        return await compare(address, candidate, baseline=baseline, baseline_name=baseline_name,
                             concurrency=concurrency, **self._client())

    async def drive(
        self, call: Call, *, concurrency: int = 8, max_calls: int | None = None
    ) -> LatencyStats:
        """:func:`drive` (in this process) with this run's durations."""
        return await drive(call, concurrency=concurrency, duration=self.duration,
                           warmup=self.warmup, max_calls=max_calls)


# -- servers and backends ----------------------------------------------------------------------


def _service_env(database_url: str, redis_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("NETSUITE_", "STOCKX_", "SHIPSTATION_", "ZOHO_", "SYNCSUITE_"))}
    env.update({
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SYNCSUITE_ADMIN_TOKEN": "bench-admin-" + secrets.token_hex(8),
        "SYNCSUITE_JWT_SECRET": "bench-jwt-secret-" + secrets.token_hex(16),
        "SYNCSUITE_DATA_KEY": secrets.token_urlsafe(32),
        "SYNCSUITE_LOG_LEVEL": "warning",
        "SYNCSUITE_LOG_FORMAT": "json",
        "SYNCSUITE_METRICS_PORT": "-1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@contextlib.asynccontextmanager
async def bench_backends(run_dir: Path = RUN_DIR) -> AsyncIterator[dict[str, str]]:
    """PostgreSQL and Redis (found or started by :class:`BackendStack`), a fresh database and a
    free Redis logical database, both dropped after: yields the environment to start a service
    with (backend URLs, admin token, JWT secret, log level warning, metrics off)."""
    stack = BackendStack(run_dir=run_dir)
    backends = await asyncio.to_thread(stack.start)
    try:
        async with (
            scratch_database(backends.database_url, "syncsuite_bench") as database_url,
            scratch_redis_db(backends.redis_url) as redis_url,
        ):
            yield _service_env(database_url, redis_url)
    finally:
        await asyncio.to_thread(stack.stop)


def admin_metadata(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the admin token of ``env``."""
    return (("authorization", f"Bearer {env['SYNCSUITE_ADMIN_TOKEN']}"),)


@contextlib.asynccontextmanager
async def in_process(definition: ServiceDefinition, env: Mapping[str, str]) -> AsyncIterator[str]:
    """The service on this event loop (port 0); yields its address."""
    async with running_service(definition, env) as service:
        yield service.address


@contextlib.contextmanager
def as_process(
    module: str, env: Mapping[str, str], *, timeout: float = 60.0, log_dir: Path = RUN_DIR
) -> Iterator[str]:
    """``python -m <module>`` on a free port, in its own process; yields its address once its
    health service says SERVING, and stops it (SIGTERM) after."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    name = module.rsplit(".", 1)[-1]
    process = ManagedProcess(
        name, [sys.executable, "-m", module], {**env, "SYNCSUITE_GRPC_PORT": str(port)},
        log_dir / f"{name}-{port}.log", cwd=ROOT,
    ).start()
    try:
        try:
            wait_for_health(address, timeout, alive=lambda: process.running)
        except (TimeoutError, ProcessExited):
            raise BenchError(f"{module} is not serving at {address}:\n{process.log_tail()}"
                             ) from None
        if process.pid is not None and os.path.exists(f"/proc/{process.pid}/stat"):
            _server_pids[address] = process.pid
        yield address
    finally:
        _server_pids.pop(address, None)
        process.stop()


_server_pids: dict[str, int] = {}  # address → pid of the servers as_process started
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system, all threads) process ``pid`` has used so far (Linux)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime



# -- reporting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    text: str
    check: Callable[[float], bool]


def at_most(limit: float, unit: str = "") -> Target:
    return Target(f"≤ {limit:g} {unit}".rstrip(), lambda value: value <= limit)


def at_least(limit: float, unit: str = "") -> Target:
    return Target(f"≥ {limit:g} {unit}".rstrip(), lambda value: value >= limit)


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    notes: str = ""


def _format(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip()
                      for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu": model,
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
    }


class Report:
    """The named figures of one suite; :meth:`save` writes ``<suite>.json`` and ``<suite>.md``."""

    def __init__(self, suite: str, options: Options | None = None) -> None:
        self.suite = suite
        self.options = options or Options()
        self.figures: list[Figure] = []
        self.error: str | None = None
        self.started = datetime.now(UTC)
        self.machine = machine_info()

    def add(
        self, name: str, value: float, unit: str, *, target: Target | str = "",
        met: bool | None = None, notes: str = "",
    ) -> Figure:
        """A figure; a :class:`Target` also decides ``met``. Targets are reported, never
        asserted."""
        text = target if isinstance(target, str) else target.text
        if isinstance(target, Target):
            met = target.check(value)
        figure = Figure(name, float(value), unit, text, met, notes)
        self.figures.append(figure)
        return figure

    def add_stats(
        self, name: str, stats: LatencyStats, *, p99: Target | None = None,
        throughput: Target | None = None, notes: str = "",
    ) -> None:
        """Throughput, p50 and p99 of ``stats`` as three figures."""
        detail = "; ".join(filter(None, [
            f"{stats.calls} calls, {stats.errors} errors, max {stats.max_ms:.1f} ms", notes
        ]))
        self.add(f"{name} throughput", stats.throughput, "calls/s", target=throughput or "",
                 notes=detail)
        self.add(f"{name} p50", stats.p50_ms, "ms")
        self.add(f"{name} p99", stats.p99_ms, "ms", target=p99 or "")
        if stats.server_cpu_us is not None:
            self.add(f"{name} server CPU per call", stats.server_cpu_us, "µs")

    def add_comparison(
        self, name: str, comparison: Comparison, *, throughput: Target | None = None,
        p99: Target | None = None,
    ) -> None:
        """The throughput and p99 ratios of ``comparison`` as two figures."""
        versus = f"vs {comparison.baseline_name}"
        self.add(f"{name} throughput {versus}", comparison.throughput_ratio, "×",
                 target=throughput or "")
        self.add(f"{name} p99 {versus}", comparison.p99_ratio, "×", target=p99 or "")
        if comparison.server_cpu_ratio is not None:
            self.add(f"{name} server CPU per call {versus}", comparison.server_cpu_ratio, "×")

    def rows(self) -> list[list[str]]:
        met = {True: "yes", False: "NO", None: ""}
        return [[f.name, _format(f.value), f.unit, f.target, met[f.met], f.notes]
                for f in self.figures]

    HEADER = ("figure", "value", "unit", "target", "met", "notes")

    def table(self) -> str:
        """A plain-text table for the terminal."""
        rows = [list(self.HEADER), *self.rows()]
        widths = [max(len(row[column]) for row in rows) for column in range(len(self.HEADER))]
        lines = ["  ".join(cell.ljust(width) if column != 1 else cell.rjust(width)
                           for column, (cell, width) in enumerate(zip(row, widths, strict=True)))
                 .rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * width for width in widths))
        if self.error:
            lines.append(f"suite failed: {self.error}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "timestamp": self.started.isoformat(timespec="seconds"),
            "machine": self.machine,
            "options": {**asdict(self.options), "client": str(self.options.client)},
            "figures": [
                {**asdict(figure), "value": figure.value if math.isfinite(figure.value) else None}
                for figure in self.figures
            ],
            "error": self.error,
        }

    def markdown(self) -> str:
        machine = self.machine
        lines = [
            f"# Benchmark `{self.suite}`",
            "",
            f"{self.started.isoformat(timespec='seconds')}: {machine['nproc']} CPUs "
            f"({machine['cpu'] or 'unknown'}), load {machine['load_average']}, "
            f"Python {machine['python']}, grpcio {machine['grpcio']}; client "
            f"{self._client_text()}, "
            f"{self.options.duration:g} s per measurement after {self.options.warmup:g} s "
            "warmup.",
            "",
            "| " + " | ".join(self.HEADER) + " |",
            "|" + "---|" * len(self.HEADER),
            *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
              for row in self.rows()),
        ]
        if self.error:
            lines += ["", f"**Suite failed:** `{self.error}`"]
        return "\n".join(lines) + "\n"

    def _client_text(self) -> str:
        options = self.options
        if options.client is ClientMode.PROCESSES:
            return f"{options.client} ({options.workers} worker(s))"
        return str(options.client)

    def save(self, directory: Path = RESULTS_DIR) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / f"{self.suite}.json"
        markdown_path = directory / f"{self.suite}.md"
        json_path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n")
        markdown_path.write_text(self.markdown())
        return json_path, markdown_path
