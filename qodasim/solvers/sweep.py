"""Parameter sweeps over solver runs: one process pool, each result saved as it finishes, restartable.

A sweep file is a run file (:mod:`qodasim.solvers.runspec`) plus a ``[sweep]`` table whose keys are
dotted paths into it and whose values are lists; the sweep is their Cartesian product::

    [sweep]
    "solver.method" = ["qoda", "qgenx"]
    "solver.seed" = [0, 1, 2]

Each point runs :func:`~qodasim.solvers.solve` (``K`` simulated workers) in a pool worker and is saved
as ``OUT/runs/<key>.npz`` + ``.json`` (``key`` = :func:`~qodasim.solvers.runspec.run_key`), written
under a temporary name and renamed, the JSON last, so a JSON file means a finished run.  A rerun skips
every point whose files load (one that does not runs again).  Points are expanded one at a time as
they are submitted (the count, the product of the lists' lengths, is reported first), so a sweep of
10^5 points starts at once.  The pool is ``mpi4py.futures.MPIPoolExecutor`` (one process pool that
spawns its workers on a laptop, or uses the ranks of ``mpiexec -n N python -m mpi4py.futures -m qodasim
sweep …`` on a cluster) or, with ``pool="process"``, ``concurrent.futures.ProcessPoolExecutor``.  Either
pool's workers die with the sweep process, even under ``kill -9``: the process pool's by
``PR_SET_PDEATHSIG`` (below), the MPI pool's because MPICH's process manager, started by the sweep,
ends the spawned workers when the sweep's connection to it closes (tested for both).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from .runspec import load_run, run_key

__all__ = ["expand_sweep", "iter_sweep", "run_sweep", "run_point", "sweep_size"]


def _set(spec: dict, dotted: str, value) -> None:
    table, _, name = dotted.partition(".")
    if table not in ("problem", "solver") or not name or "." in name:
        raise ValueError(f"sweep key {dotted!r} must be 'problem.<arg>' or 'solver.<field>'")
    spec.setdefault(table, {})[name] = value


def _grid(source) -> tuple[dict, str, dict]:
    """``(base tables, where, grid)`` of a sweep file or dict, the grid checked (nothing expanded)."""
    if isinstance(source, dict):
        base, where = source, "sweep"
    else:
        from .runspec import tomllib

        base, where = tomllib.loads(Path(source).read_text()), str(source)
    grid = base.get("sweep", {})
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ValueError(f"{where}: [sweep] must map dotted keys to non-empty lists")
    for name in grid:
        _set({}, name, None)
    return base, where, grid


def sweep_size(source) -> int:
    """The number of points of a sweep (the product of its lists' lengths), without expanding it."""
    return math.prod(len(v) for v in _grid(source)[2].values())


def iter_sweep(source):
    """The checked points of a sweep (:func:`expand_sweep`'s dicts) one at a time, in the order of the
    product, so a large sweep starts at once; a repeated point is a ``ValueError`` when it is reached."""
    base, where, grid = _grid(source)
    names = list(grid)
    seen: set[str] = set()
    for combo in itertools.product(*(grid[n] for n in names)):
        spec = {"problem": dict(base.get("problem", {})), "solver": dict(base.get("solver", {}))}
        for n, v in zip(names, combo, strict=True):
            _set(spec, n, v)
        run = load_run(spec)
        key = run_key(run)
        if key in seen:
            raise ValueError(f"{where}: the sweep repeats a point ({dict(zip(names, combo, strict=True))})")
        seen.add(key)
        yield {"spec": run.to_dict(), "values": dict(zip(names, combo, strict=True)), "key": key}


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
    return list(iter_sweep(source))


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


def _die_with_parent() -> None:
    """A pool worker's initializer: the kernel sends it SIGKILL when the process that started it dies
    (Linux ``PR_SET_PDEATHSIG``), so a killed ``qodasim sweep`` leaves no worker behind; elsewhere a
    thread ends the worker once its parent is gone."""
    import signal
    import threading
    import time

    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0:  # PR_SET_PDEATHSIG = 1
            if os.getppid() != parent:  # the parent died before the call
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _executor(pool: str, workers: int | None):
    if pool == "mpi":
        try:
            from mpi4py.futures import MPIPoolExecutor
        except ImportError as exc:
            raise ValueError("pool 'mpi' needs mpi4py: pip install 'qodasim[mpi]' (or use --pool process)") from exc
        return MPIPoolExecutor(max_workers=workers, main=False)  # workers need not import the launching script
    if pool == "process":
        return ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent)
    raise ValueError(f"pool must be 'mpi' or 'process', got {pool!r}")


def _finished(out: Path, key: str):
    """The summary row of a finished point read back from disk, or ``None`` if it has not finished or its
    files do not load (then it runs again)."""
    path = out / "runs" / key
    if not path.with_suffix(".json").exists():
        return None
    try:
        return _summary_from_disk(path)
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None


def run_sweep(source, outdir, pool: str = "mpi", workers: int | None = None, report=print) -> list[dict]:
    """Run every unfinished point of a sweep; returns one summary row per point (finished ones read
    back from disk; a finished point whose files do not load runs again).  ``report`` gets the number
    of points first, then one line per point as it finishes.  Points are expanded as they are
    submitted (at most a few per worker waiting), so a large sweep starts at once."""
    n = sweep_size(source)
    out = Path(outdir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    report(f"sweep: {n} points")
    rows, order, again, skipped = {}, [], 0, 0
    with _executor(pool, workers) as ex:
        limit = 4 * (workers or os.cpu_count() or 1)
        futures: dict = {}

        def drain(until: int) -> None:
            while len(futures) > until:
                fut = next(as_completed(futures))
                p = futures.pop(fut)
                row = fut.result()
                rows[row["key"]] = row
                gap = "n/a" if row["final_gap"] is None else f"{row['final_gap']:.4g}"
                report(f"  done {row['key']} {p['values']}: {row['status']}, gap {gap}")

        for p in iter_sweep(source):
            order.append({"key": p["key"], "values": p["values"]})
            done = _finished(out, p["key"])
            if done is not None:
                rows[p["key"]] = done
                skipped += 1
                continue
            again += (out / "runs" / f"{p['key']}.json").exists()
            futures[ex.submit(run_point, p["spec"], str(out))] = p
            drain(limit)
        drain(0)
    (out / "sweep.json").write_text(json.dumps(order, indent=1))
    report(f"sweep: {n} points: {skipped} already finished, {n - skipped} run"
           + (f" ({again} of them finished before but unreadable)" if again else ""))  # fmt: skip
    table = [{**o["values"], **rows[o["key"]]} for o in order]
    (out / "summary.json").write_text(json.dumps(table, indent=1, default=float))
    return table


def _summary_from_disk(path: Path) -> dict:
    from . import SolverResult

    return _summary(SolverResult.load(path), path.name)
