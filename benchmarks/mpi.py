"""Real MPI workers against the in-process simulation, and measured time against the network model.

For K ∈ {1, 2, 4} ranks (``mpiexec -n K``, the MPICH wheel of the ``mpi`` extra) and a few model sizes
d, QODA with global 4-level quantization (dense γ) on a block-diagonal layered problem:

* iterations/s of :func:`solve_mpi` (rank 0's loop time) and of the in-process :func:`solve` with K
  simulated workers, same config (ratio ``mpi_over_sim``: > 1 means the real ranks are faster);
* the network model's prediction of the MPI time per iteration (:mod:`qodasim.netlab.model`):
  one oracle + quantize/encode of one vector + decode of K − 1 + the all-gather of the ledger's
  messages, with the machine's ``α``, ``β`` fitted by least squares to timed ``Iallgatherv`` calls
  of several sizes on the same ranks, and compute/codec costs timed in the same job
  (``measured_over_model``: 1 means the model explains the time).

This machine has 2 cores: 4 ranks oversubscribe it, which the model does not know (reported as is).
``--quick``: d ∈ {10^3, 10^4}, 40 iterations.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, report  # noqa: E402


def _problem(d: int):
    from qodasim.vi import layered_problem

    block = 100 if d >= 100 else d
    return layered_problem([block] * (d // block), [1.0] * (d // block), seed=0)


def _config(K: int, T: int):
    from qodasim.solvers import SolverConfig
    from qodasim.vi import NoiseModel

    return SolverConfig(method="qoda", K=K, T=T, compression="global", levels="uniform:3",
                        noise=NoiseModel("absolute", 1.0), record=2, seed=0)  # fmt: skip


def rank_job(d: int, T: int, out: str) -> None:
    """Run under mpiexec: calibrate the collective, time solve_mpi, and on rank 0 the simulation."""
    from mpi4py import MPI

    from qodasim.coding import Decoder, Encoder
    from qodasim.netlab.model import Network, Workload, run_time
    from qodasim.solvers import solve
    from qodasim.solvers.mpi import solve_mpi, wait

    comm = MPI.COMM_WORLD
    K = comm.size
    # α, β: Iallgatherv of n bytes from every rank, t = (K−1)(α + 8n/β) for a ring (fit)
    sizes, times = [2**6, 2**12, 2**16, 2**19], []
    for n in sizes:
        send = np.zeros(n, np.uint8)
        recv = np.empty(n * K, np.uint8)
        best = float("inf")
        for _ in range(12):
            comm.Barrier()
            t0 = time.perf_counter()
            wait(comm.Iallgatherv(send, [recv, ([n] * K, [n * i for i in range(K)]), MPI.BYTE]), 30, "calibration")
            best = min(best, time.perf_counter() - t0)
        times.append(comm.allreduce(best, op=MPI.MAX))
    if K > 1:
        A = np.column_stack([np.full(len(sizes), K - 1.0), (K - 1.0) * 8 * np.array(sizes, float)])
        (alpha, inv_beta), *_ = np.linalg.lstsq(A, np.array(times), rcond=None)
        alpha, beta = max(float(alpha), 0.0), 1.0 / max(float(inv_beta), 1e-15)
    else:
        alpha, beta = 0.0, float("inf")
    problem, cfg = _problem(d), _config(K, T)
    solve_mpi(problem, _config(K, 3))  # warm-up: compile, caches
    comm.Barrier()
    res = solve_mpi(problem, cfg)
    mpi_wall = comm.allreduce(res.wall_time, op=MPI.MAX)
    if comm.rank != 0:
        return
    # the model's inputs, timed here: one oracle call (operator + one worker's noise), the codec
    from qodasim.rng import Key
    from qodasim.solvers.genx import _make_quantizer

    X = np.zeros((1, problem.d))
    reps = 20
    t0 = time.perf_counter()
    for i in range(reps):
        V = cfg.noise.sample_worker(problem, X, 0, 0, i)
    t_oracle = (time.perf_counter() - t0) / reps
    quant = _make_quantizer(problem, cfg)
    t0 = time.perf_counter()
    for i in range(reps):
        msg = Encoder().encode(quant.quantize(V[0], Key(0, 0, i)))
    t_enc = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        Decoder().decode(msg).dequantize()
    t_dec = (time.perf_counter() - t0) / reps
    work = Workload(problem.d, t_oracle, "weak", 1.0, t_enc / problem.d, t_dec / problem.d)
    net = Network(beta if np.isfinite(beta) else 1e30, alpha)
    model = float(run_time(res.ledger, K, problem.d, work, net)[-1]) / T
    sim = solve(problem, cfg)
    json.dump({"K": K, "d": d, "T": T, "mpi_s_per_iter": mpi_wall / T, "sim_s_per_iter": sim.wall_time / T,
               "model_s_per_iter": model, "alpha": alpha, "beta_bits_per_s": beta,
               "allgather_times": dict(zip(map(str, sizes), times)), "oracle_s": t_oracle, "encode_s": t_enc,
               "decode_s": t_dec, "bits_per_coord": res.ledger.total() / res.ledger.messages() / problem.d,
               "same_iterates": bool(np.array_equal(res.x_last, sim.x_last))}, open(out, "w"))  # fmt: skip


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rank-job", nargs=3, metavar=("D", "T", "OUT"), help=argparse_hidden())
    args = p.parse_args()
    if args.rank_job:
        d, T, out = args.rank_job
        rank_job(int(d), int(T), out)
        return
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("mpiexec not found: pip install 'qodasim[mpi]'")
    dims, T = ([1_000, 10_000], 40) if args.quick else ([1_000, 10_000, 100_000], 100)
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    rows, details = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for d in dims:
            for K in (1, 2, 4):
                out = Path(tmp) / f"{K}_{d}.json"
                cmd = [mpiexec, "-n", str(K), sys.executable, __file__, "--rank-job", str(d), str(T), str(out)]
                subprocess.run(cmd, check=True, env=env, timeout=1800)
                r = json.loads(out.read_text())
                details.append(r)
                tag = f"K={K} d={d}"
                rows.append((f"{tag} MPI it/s", 1 / r["mpi_s_per_iter"], "it/s"))
                rows.append((f"{tag} simulated it/s", 1 / r["sim_s_per_iter"], "it/s"))
                rows.append((f"{tag} mpi_over_sim", r["sim_s_per_iter"] / r["mpi_s_per_iter"], "x"))
                rows.append((f"{tag} measured_over_model", r["mpi_s_per_iter"] / r["model_s_per_iter"], "x"))
                if not r["same_iterates"]:
                    raise SystemExit(f"{tag}: MPI iterates differ from the simulation")
    fits = {f"K={r['K']}": (r["alpha"], r["beta_bits_per_s"]) for r in details if r["K"] > 1}
    for k, (a, b) in sorted(fits.items()):
        print(f"{k}: fitted alpha {a * 1e6:.1f} us, beta {b / 1e9:.2f} Gbit/s (this machine's shared memory)")
    report("mpi", rows, {"details": details})


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
