"""Parameter sweeps over solver runs: one process pool, each result saved as it finishes, restartable.

A sweep file is a run file (:mod:`qodasim.solvers.runspec`) plus a ``[sweep]`` table whose keys are
dotted paths into it and whose values are lists; the sweep is their Cartesian product::

    [sweep]
    "solver.method" = ["qoda", "qgenx"]
    "solver.seed" = [0, 1, 2]

Each point runs :func:`~qodasim.solvers.solve` (``K`` simulated workers) in a pool worker and is saved
as ``OUT/runs/<key>.npz`` + ``.json`` (``key`` = :func:`~qodasim.solvers.runspec.run_key`), written
under a temporary name and renamed, the JSON last, so a JSON file means a finished run.  A rerun skips
every point whose JSON exists.  The pool is ``mpi4py.futures.MPIPoolExecutor`` (one process pool that
spawns its workers on a laptop, or uses the ranks of ``mpiexec -n N python -m mpi4py.futures -m qodasim
sweep …`` on a cluster) or, with ``pool="process"``, ``concurrent.futures.ProcessPoolExecutor``.
"""

from __future__ import annotations

import itertools
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from .runspec import load_run, run_key

__all__ = ["expand_sweep", "run_sweep", "run_point"]


def _set(spec: dict, dotted: str, value) -> None:
    table, _, name = dotted.partition(".")
    if table not in ("problem", "solver") or not name or "." in name:
        raise ValueError(f"sweep key {dotted!r} must be 'problem.<arg>' or 'solver.<field>'")
    spec.setdefault(table, {})[name] = value


def expand_sweep(source) -> list[dict]:
    """The checked points of a sweep file (path or dict), in the order of the product: one dict per
    point with its run (``"spec"``: the ``problem`` and ``solver`` tables), the swept ``"values"`` and
    its ``"key"`` (:func:`~qodasim.solvers.runspec.run_key`).

    Examples
    --------
    >>> from qodasim.solvers.sweep import expand_sweep
    >>> pts = expand_sweep({"problem": {"name": "bilinear_game", "n": 4}, "solver": {"T": 10},
    ...                     "sweep": {"solver.seed": [0, 1], "solver.method": ["qoda", "qgenx"]}})
    >>> [(p["values"]["solver.seed"], p["values"]["solver.method"]) for p in pts]
    [(0, 'qoda'), (0, 'qgenx'), (1, 'qoda'), (1, 'qgenx')]
    """
    if isinstance(source, dict):
        base, where = source, "sweep"
    else:
        from .runspec import tomllib

        base, where = tomllib.loads(Path(source).read_text()), str(source)
    grid = base.get("sweep", {})
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ValueError(f"{where}: [sweep] must map dotted keys to non-empty lists")
    names = list(grid)
    points = []
    for combo in itertools.product(*(grid[n] for n in names)):
        spec = {"problem": dict(base.get("problem", {})), "solver": dict(base.get("solver", {}))}
        for n, v in zip(names, combo, strict=True):
            _set(spec, n, v)
        run = load_run(spec)
        points.append({"spec": run.to_dict(), "values": dict(zip(names, combo, strict=True)), "key": run_key(run)})
    keys = [p["key"] for p in points]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{where}: the sweep repeats a point")
    return points


def run_point(spec: dict, outdir: str) -> dict:
    """Run one point (a run spec dict) with :func:`~qodasim.solvers.solve`, save it under
    ``outdir/runs/<key>`` (temporary names, then renamed, the JSON last) and return its summary row
    (the pool's task: a module-level function, so it pickles)."""
    from . import solve

    run = load_run(spec)
    key = run_key(run)
    runs = Path(outdir) / "runs"
    res = solve(run.make_problem(), run.make_config())
    tmp = runs / f".{key}.{os.getpid()}.tmp"
    res.save(tmp)
    meta = json.loads(tmp.with_suffix(".json").read_text())
    meta["spec"] = run.to_dict()
    tmp.with_suffix(".json").write_text(json.dumps(meta, default=float))
    os.replace(tmp.with_suffix(".npz"), runs / f"{key}.npz")
    os.replace(tmp.with_suffix(".json"), runs / f"{key}.json")
    return _summary(res, key)


def _summary(res, key: str) -> dict:
    """One row: status, the final value of every measure (mean over replicas; ``final_gap`` is the gap at
    the average, ``None`` for a problem that records no gap, e.g. the WGAN), bits and seconds."""
    final = {m: float(np.nanmean(v[:, -1])) if v.size else None for m, v in res.measures.items()}
    return {"key": key, "status": res.status, "final_gap": final.get("gap_avg"), "final": final,
            "bits": float(res.bits_per_iteration.sum(axis=1).mean()), "seconds": round(res.wall_time, 3)}  # fmt: skip


def _executor(pool: str, workers: int | None):
    if pool == "mpi":
        try:
            from mpi4py.futures import MPIPoolExecutor
        except ImportError as exc:
            raise ValueError("pool 'mpi' needs mpi4py: pip install 'qodasim[mpi]' (or use --pool process)") from exc
        return MPIPoolExecutor(max_workers=workers, main=False)  # workers need not import the launching script
    if pool == "process":
        return ProcessPoolExecutor(max_workers=workers)
    raise ValueError(f"pool must be 'mpi' or 'process', got {pool!r}")


def run_sweep(source, outdir, pool: str = "mpi", workers: int | None = None, report=print) -> list[dict]:
    """Run every unfinished point of a sweep; returns one summary row per point (finished ones read
    back from disk).  ``report`` gets one line per point as it finishes (or is skipped)."""
    points = expand_sweep(source)
    out = Path(outdir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps([{"key": p["key"], "values": p["values"]} for p in points], indent=1))
    todo = [p for p in points if not (out / "runs" / f"{p['key']}.json").exists()]
    report(f"sweep: {len(points)} points, {len(points) - len(todo)} already finished, {len(todo)} to run")
    rows = {}
    if todo:
        with _executor(pool, workers) as ex:
            futures = {ex.submit(run_point, p["spec"], str(out)): p for p in todo}
            for fut in as_completed(futures):
                row = fut.result()
                rows[row["key"]] = row
                gap = "n/a" if row["final_gap"] is None else f"{row['final_gap']:.4g}"
                report(f"  done {row['key']} {futures[fut]['values']}: {row['status']}, gap {gap}")
    table = []
    for p in points:
        row = rows.get(p["key"]) or _summary_from_disk(out / "runs" / p["key"])
        table.append({**p["values"], **row})
    (out / "summary.json").write_text(json.dumps(table, indent=1, default=float))
    return table


def _summary_from_disk(path: Path) -> dict:
    from . import SolverResult

    return _summary(SolverResult.load(path), path.name)
