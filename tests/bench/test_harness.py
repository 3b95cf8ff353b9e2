"""The benchmark harness: its pure parts, and one quick run of the foundation suite."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from itertools import count
from pathlib import Path

import pytest

from bench.harness import (
    BenchError,
    Comparison,
    LatencyStats,
    Options,
    Report,
    Samples,
    _shares,
    at_least,
    at_most,
    cpu_seconds,
    drive,
    percentile,
    speedup,
)

ROOT = Path(__file__).resolve().parents[2]


def _stats(throughput: float, p99_ms: float) -> LatencyStats:
    return LatencyStats(calls=100, errors=0, seconds=1.0, throughput=throughput, p50_ms=1.0,
                        p90_ms=2.0, p99_ms=p99_ms, max_ms=p99_ms, mean_ms=1.0)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, 0.0),
        ([7.0], 99, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([float(v) for v in range(1, 101)], 99, 99.01),
        ([float(v) for v in range(1, 101)], 90, 90.1),
    ],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_outside_0_100_is_refused() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_samples_summarise_in_milliseconds() -> None:
    stats = Samples(latencies=[0.004, 0.001, 0.002, 0.003], errors=1, seconds=2.0).stats()
    assert (stats.calls, stats.errors, stats.throughput) == (4, 1, 2.0)
    assert (stats.p50_ms, stats.max_ms, stats.mean_ms) == pytest.approx((2.5, 4.0, 2.5))


def test_merged_samples_keep_the_longest_window_or_add_sequential_ones() -> None:
    parts = [Samples([0.001], 1, 1.0, "boom"), Samples([0.002, 0.003], 0, 1.5)]
    merged = Samples.merge(parts)
    assert (len(merged.latencies), merged.errors, merged.seconds, merged.first_error) == (
        3, 1, 1.5, "boom"
    )
    assert Samples.merge(parts, sequential=True).seconds == 2.5


def test_server_cpu_is_per_call_and_adds_up_only_over_sequential_parts() -> None:
    parts = [Samples([0.001] * 3, 1, 1.0, server_cpu=0.002),
             Samples([0.002] * 4, 0, 1.0, server_cpu=0.005)]
    assert parts[0].stats().server_cpu_us == pytest.approx(500)  # 2 ms over 3 calls + 1 error
    merged = Samples.merge(parts, sequential=True)
    assert merged.stats().server_cpu_us == pytest.approx(875)  # 7 ms over 8 calls
    assert Samples.merge(parts).server_cpu is None  # overlapping windows: not one process's
    assert Samples.merge([parts[0], Samples([0.001], 0, 1.0)], sequential=True
                         ).stats().server_cpu_us is None
    cheap, dear = (replace(_stats(1000, 1.0), server_cpu_us=us) for us in (300.0, 450.0))
    assert Comparison(dear, cheap).server_cpu_ratio == pytest.approx(1.5)
    assert Comparison(_stats(1000, 1.0), cheap).server_cpu_ratio is None


def test_cpu_seconds_counts_this_process_working() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.1
    while time.process_time() < deadline:
        pass
    assert 0.05 <= cpu_seconds(os.getpid()) - before < 1.0


def test_all_failed_samples_raise() -> None:
    with pytest.raises(BenchError, match=r"all 3 calls failed.*nope"):
        Samples(errors=3, seconds=1.0, first_error="RuntimeError('nope')").stats()


def test_shares_split_evenly() -> None:
    assert _shares(8, 3) == [3, 3, 2]
    assert _shares(2, 4) == [1, 1, 0, 0]
    assert sum(_shares(64, 5)) == 64


async def test_drive_counts_calls_and_errors_without_raising() -> None:
    numbers = count()

    async def sometimes_fails() -> None:
        await asyncio.sleep(0)
        if next(numbers) % 4 == 3:
            raise RuntimeError("every fourth call")

    stats = await drive(sometimes_fails, concurrency=4, duration=5.0, warmup=0.0, max_calls=200)
    assert stats.calls + stats.errors == 200
    assert stats.errors == pytest.approx(50, abs=4)
    assert 0 < stats.seconds < 5.0
    assert stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms


async def test_drive_raises_when_every_call_fails() -> None:
    async def fails() -> None:
        raise RuntimeError("down")

    with pytest.raises(BenchError, match="down"):
        await drive(fails, concurrency=2, duration=0.05, warmup=0.0)


async def test_drive_measures_only_after_the_warmup() -> None:
    async def sleeps() -> None:
        await asyncio.sleep(0.01)

    stats = await drive(sleeps, concurrency=2, duration=0.1, warmup=0.1)
    assert stats.seconds == pytest.approx(0.1, abs=0.05)
    assert 6 <= stats.calls <= 24  # 2 callers x ~10 ms calls x 0.1 s, not the warmup's


def test_comparison_and_speedup_ratios() -> None:
    baseline, candidate = _stats(3000, 4.0), _stats(1500, 6.0)
    comparison = Comparison(candidate, baseline)
    assert comparison.throughput_ratio == pytest.approx(0.5)
    assert comparison.p99_ratio == pytest.approx(1.5)
    assert speedup(baseline, candidate) == pytest.approx(2.0)
    assert math.isnan(Comparison(candidate, _stats(0, 0)).throughput_ratio)


def test_report_saves_json_and_markdown(tmp_path: Path) -> None:
    report = Report("demo", Options.for_run(quick=True))
    report.add_stats("Ping ×8", _stats(3000, 4.0), p99=at_most(5, "ms"))
    report.add_comparison("Get ×8", Comparison(_stats(1500, 6.0), _stats(3000, 4.0)),
                          throughput=at_least(0.8, "×"))
    report.add("broken ratio", math.nan, "×", notes="a | pipe")
    json_path, markdown_path = report.save(tmp_path)

    saved = json.loads(json_path.read_text())
    assert saved["suite"] == "demo"
    assert saved["machine"]["nproc"] >= 1 and saved["machine"]["python"]
    assert saved["timestamp"] and saved["options"]["quick"] is True
    figures = {figure["name"]: figure for figure in saved["figures"]}
    p99 = figures["Ping ×8 p99"]
    assert (p99["value"], p99["unit"], p99["target"], p99["met"]) == (4.0, "ms", "≤ 5 ms", True)
    assert figures["Get ×8 throughput vs Ping"]["met"] is False
    assert figures["broken ratio"]["value"] is None
    assert figures["Ping ×8 p50"]["met"] is None

    markdown = markdown_path.read_text()
    assert "| Ping ×8 p99 | 4.00 | ms | ≤ 5 ms | yes |" in markdown
    assert "a \\| pipe" in markdown
    assert "NO" in report.table()


@pytest.mark.slow
def test_foundation_quick_run_exits_0_and_saves_json(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "foundation", "--quick", "--results", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    saved = json.loads((tmp_path / "foundation.json").read_text())
    assert saved["error"] is None
    names = {figure["name"] for figure in saved["figures"]}
    assert {"Ping ×8 p99", "Ping ×64 throughput", "Health/Check ×8 throughput vs Ping"} <= names
    assert (tmp_path / "foundation.md").exists()
