"""Shared helpers for the benchmark scripts: timing, tables, JSON results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

# QODASIM_BENCH_RESULTS redirects the JSON (smoke tests write to a temporary folder).
RESULTS = Path(os.environ.get("QODASIM_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (smoke run)")
    p.add_argument("--repeats", type=int, default=None, help="timed repetitions (best is reported)")
    return p


def best_time(fn, repeats: int, warmup: int = 1) -> float:
    """Best wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved_times(fns: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall times of each ``fns[name]()`` over ``repeats`` rounds, the functions taking turns in every
    round (after ``warmup`` untimed rounds): on a shared machine whose speed drifts by tens of percent
    between seconds, a ratio of two functions is only meaningful between times taken side by side.
    Returns ``{name: [time of round 0, round 1, ...]}``."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def round_ratios(times: dict[str, list[float]], num: str, den: str) -> tuple[float, float, float]:
    """``(min, median, max)`` over the rounds of ``times[num][k] / times[den][k]`` (same round)."""
    r = [a / b for a, b in zip(times[num], times[den])]
    return min(r), statistics.median(r), max(r)


def machine() -> dict:
    import numba

    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "python": platform.python_version(),
    }


def report(name: str, rows: list[tuple[str, float, str]], extra: dict | None = None) -> dict:
    """Print a table of ``(metric, value, unit)`` and write ``benchmarks/results/<name>.json``."""
    width = max(len(r[0]) for r in rows)
    print(f"\n{name}")
    print("-" * (width + 28))
    for metric, value, unit in rows:
        print(f"{metric:<{width}}  {value:>14.4g}  {unit}")
    out = {metric: value for metric, value, _ in rows}
    out["_machine"] = machine()
    if extra:
        out.update(extra)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path}")
    return out
