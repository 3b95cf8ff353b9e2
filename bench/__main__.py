"""``python -m bench [suite ...] [--quick] [--client inline|processes] [--workers N] [--list]``.

Runs the suites named (all of them when none is), each on an event loop of its own, prints
their figures and saves them under bench/results/. A suite is a module ``bench/<name>.py`` with
``async def run(report: Report, options: Options) -> None``. The exit code is 1 if a suite
crashed; a missed target never changes it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import pkgutil
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bench.harness import (
    DEFAULT_CLIENT,
    DEFAULT_WORKERS,
    RESULTS_DIR,
    ClientMode,
    Options,
    Report,
)
from shared.logging import configure_logging

Suite = Callable[[Report, Options], Awaitable[None]]
NOT_SUITES = frozenset({"harness", "__main__"})
FIRST = "foundation"  # the baseline runs first


def discover() -> list[str]:
    """Every module of bench/ that defines an async ``run`` (foundation first)."""
    names = [info.name for info in pkgutil.iter_modules([str(Path(__file__).parent)])
             if info.name not in NOT_SUITES and not info.name.startswith("_")]
    return sorted(filter(_is_suite, names), key=lambda name: (name != FIRST, name))


def _is_suite(name: str) -> bool:
    try:
        return _find_run(name) is not None
    except Exception:
        return True  # broken: run_suite reports why, as a crash of that suite


def _find_run(name: str) -> Suite | None:
    run = getattr(importlib.import_module(f"bench.{name}"), "run", None)
    return run if inspect.iscoroutinefunction(run) else None


async def run_suite(name: str, options: Options, results: Path = RESULTS_DIR) -> bool:
    """Runs one suite, prints and saves its report; False if it crashed."""
    report = Report(name, options)
    began = time.monotonic()
    print(f"== {name}", flush=True)
    try:
        suite = _find_run(name)
        if suite is None:
            raise TypeError(f"bench/{name}.py defines no `async def run(report, options)`")
        await suite(report, options)
    except Exception as error:
        traceback.print_exc()
        report.error = f"{type(error).__name__}: {error}"
    print(report.table())
    json_path, _ = report.save(results)
    print(f"({time.monotonic() - began:.1f} s; saved {json_path} and .md)\n", flush=True)
    return report.error is None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Runs benchmark suites (see bench/README.md)."
    )
    parser.add_argument("suites", nargs="*", help="suites to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="short smoke run (tests)")
    parser.add_argument("--client", type=ClientMode, choices=list(ClientMode),
                        help=f"how client callers run (default: {DEFAULT_CLIENT})")
    parser.add_argument("--workers", type=int,
                        help=f"client processes with --client processes ({DEFAULT_WORKERS})")
    parser.add_argument("--duration", type=float, help="seconds measured per figure")
    parser.add_argument("--warmup", type=float, help="seconds before measuring")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR,
                        help="where to save <suite>.json and .md (default: bench/results)")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    args = parser.parse_args(argv)
    configure_logging("warning")
    available = discover()
    if args.list:
        print("\n".join(available))
        return 0
    unknown = sorted(set(args.suites) - set(available))
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; available: {', '.join(available)}")
    options = Options.for_run(args.quick, client=args.client, workers=args.workers,
                              duration=args.duration, warmup=args.warmup)
    chosen = args.suites or available
    crashed = [name for name in chosen if not asyncio.run(run_suite(name, options, args.results))]
    if crashed:
        print(f"crashed: {', '.join(crashed)}", file=sys.stderr)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
