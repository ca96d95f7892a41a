"""The toolkit on a busy machine: the README's taste ``solve`` and ``qodasim reproduce --quick --only
epsilon`` with the default threads against ``NUMBA_NUM_THREADS=1``, while ``--load`` CPU-bound
processes (default 2: ``python -c "while 1: pass"``) run beside them, and on a quiet machine.

Each measurement is a fresh interpreter (imports included, the Numba cache warm: one untimed run of
each first), the two thread settings taking turns in every round, so a ratio compares times taken
side by side.  Target (issue 30): default / one thread ≤ 1.5 under load.

Run ``python benchmarks/contention.py [--quick] [--rounds N] [--load N]``; ``PYTHONPATH=<another
checkout>`` measures that checkout's code instead (the before/after numbers of BENCHMARKS.md).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import parser, report

TASTE = """
from qodasim.solvers import SolverConfig, solve
from qodasim.vi import NoiseModel, bilinear_game
cfg = SolverConfig(method="qoda", K=4, T=2000, compression="layerwise", levels=("uniform:7",),
                   noise=NoiseModel("absolute", 1.0))
res = solve(bilinear_game(5), cfg)
print(res.measures["gap_avg"][0, -1])
"""


def _timed(cmd: list[str], env: dict, cwd: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - t0, out


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds of (default, one thread) per job (3)")
    p.add_argument("--load", type=int, default=2, help="CPU-bound background processes (2)")
    args = p.parse_args()
    rounds = 1 if args.quick else args.rounds
    jobs = {"taste_solve": [sys.executable, "-c", TASTE]}
    if not args.quick:
        jobs["epsilon_quick"] = [sys.executable, "-m", "qodasim", "reproduce", "--quick", "--only", "epsilon",
                                 "--no-progress", "--out", "out"]  # fmt: skip
    base = {k: v for k, v in os.environ.items() if k not in ("NUMBA_NUM_THREADS", "QODASIM_THREADS")}
    settings = {"default": base, "one_thread": {**base, "NUMBA_NUM_THREADS": "1"}}
    rows, extra = [], {"load_processes": args.load}
    with tempfile.TemporaryDirectory() as cwd:
        for cmd in jobs.values():  # warm the Numba cache and the file system
            _timed(cmd, base, cwd)
        for loaded in (False, True):
            n_hogs = args.load if loaded else 0
            hogs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(n_hogs)]
            try:
                for job, cmd in jobs.items():
                    times = {s: [] for s in settings}
                    outs = {}
                    for _ in range(rounds):
                        for s, env in settings.items():
                            t, outs[s] = _timed(cmd, env, cwd)
                            times[s].append(t)
                    if job == "taste_solve":
                        assert outs["default"] == outs["one_thread"], "the thread count changed the result"
                    tag = f"{job}_{'load' if loaded else 'quiet'}"
                    med = {s: statistics.median(v) for s, v in times.items()}
                    ratio = med["default"] / med["one_thread"]
                    rows += [(f"{tag}_default_s", med["default"], "s (median)"),
                             (f"{tag}_one_thread_s", med["one_thread"], "s (median)"),
                             (f"{tag}_default_over_one", ratio, "x (target <= 1.5)")]  # fmt: skip
                    extra[f"{tag}_times"] = times
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
    report("contention", rows, extra)


if __name__ == "__main__":
    main()
