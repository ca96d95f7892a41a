"""Shared helpers for the benchmark scripts: timing, tables, JSON results."""

from __future__ import annotations

import argparse
import json
import os
import platform
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
