"""QODA with K = 16 workers, d = 10^5, layer-wise 4-bit quantization with encoding.

Reports the marginal seconds per iteration of the full solver (two run lengths, so that one-off
setup such as the restricted gap's eigen-decompositions cancels) and the ratio to the sum of its parts measured in
the same run: one oracle call (operator + the K workers' noise) plus K quantize + encode calls on
vectors of the same size.  Target (issue 15): overhead ≤ 1.1×.  ``--quick``: d = 10^4, K = 4.

Second part (issue 15): one replica of *uncompressed* QODA through :func:`solve` against a plain NumPy
optimistic dual averaging loop of the same problem, written here (operator, the K workers' Gaussian
noise from one generator, the adaptive step, the dual update — nothing else), at d = 10^3 and the
benchmark's d, marginal seconds per iteration.  Target: ``qoda_over_plain`` ≤ 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, parser, report  # noqa: E402

from qodasim import Key  # noqa: E402
from qodasim.coding import Encoder  # noqa: E402
from qodasim.solvers import SolverConfig, solve  # noqa: E402
from qodasim.solvers.genx import _make_quantizer  # noqa: E402
from qodasim.vi import NoiseModel, layered_problem  # noqa: E402


def plain_optda(problem, K: int, T: int, sigma: float = 1.0, seed: int = 0) -> np.ndarray:
    """The baseline: uncompressed optimistic dual averaging (QODA's template, K workers' absolute
    noise averaged), adaptive step ``1/√(1 + Σ‖δ‖²)``; returns the ergodic average."""
    rng = np.random.default_rng(seed)
    d = problem.d
    X1 = problem.x0()
    X, Y, V_prev, s, xsum = X1.copy(), np.zeros(d), np.zeros(d), 0.0, np.zeros(d)
    scale = sigma / np.sqrt(d)
    for _ in range(T):
        Xh = X - V_prev / np.sqrt(1.0 + s)
        V = problem.operator(Xh[None])[0] + scale * rng.standard_normal((K, d)).mean(axis=0)
        Y -= V
        diff = V - V_prev
        s += float(diff @ diff)
        V_prev = V
        X = X1 + Y / np.sqrt(1.0 + s)
        xsum += Xh
    return xsum / T


def marginal(fn, T: int, repeats: int = 3) -> float:
    """Seconds per iteration of ``fn(T)`` net of one-off setup: ``(t(T) − t(T/2)) / (T − T/2)``, each
    time the best of ``repeats`` runs (the minimum of each length, not of noisy differences, which
    is biased low on a busy machine)."""
    fn(max(T // 10, 2))  # warm-up
    short, long_ = [], []
    for _ in range(repeats):  # interleaved, so a slow spell hits both lengths
        t0 = time.perf_counter()
        fn(T // 2)
        t1 = time.perf_counter()
        fn(T)
        t2 = time.perf_counter()
        short.append(t1 - t0)
        long_.append(t2 - t1)
    return (min(long_) - min(short)) / (T - T // 2)


def main() -> None:
    args = parser(__doc__).parse_args()
    d, K, T = (10_000, 4, 20) if args.quick else (100_000, 16, 40)
    block = 100
    n_blocks = d // block
    rng = np.random.default_rng(0)
    scales = np.exp(rng.uniform(-3, 3, n_blocks))
    types = (np.log(scales) > 0).astype(int)  # two types: small- and large-scale blocks
    problem = layered_problem([block] * n_blocks, scales, types=types, seed=0)
    noise = NoiseModel("absolute", 1.0)
    cfg = SolverConfig(method="qoda", K=K, T=T, compression="layerwise", levels=("uniform:15", "exponential:14"),
                       noise=noise, record=1, bits="stream")  # fmt: skip
    solve(problem, SolverConfig(**{**cfg.to_dict(), "T": 2, "noise": noise}))  # warm-up (compilation)
    # marginal cost per iteration: two run lengths, so one-off setup (gap eigen-decompositions) cancels
    t0 = time.perf_counter()
    solve(problem, SolverConfig(**{**cfg.to_dict(), "T": T // 2, "noise": noise}))
    t1 = time.perf_counter()
    res = solve(problem, cfg)
    t2 = time.perf_counter()
    t_solver = ((t2 - t1) - (t1 - t0)) / (T - T // 2)
    assert res.status == "ok"
    # the parts, on the same sizes
    X = problem.x0()[None, :] + 0.1
    t_oracle = best_time(lambda: noise.sample(problem.operator(X), K, 0, 1), 3)
    quant = _make_quantizer(problem, cfg)
    V = noise.sample(problem.operator(X), K, 0, 1)[0]
    encs = [Encoder() for _ in range(K)]

    def parts():
        for k in range(K):
            encs[k].encode(quant.quantize(V[k], Key(0, k, 1)))

    t_qe = best_time(parts, 3)
    t_parts = t_oracle + t_qe
    rows = [
        ("d", float(d), "coordinates"),
        ("K", float(K), "workers"),
        ("solver_seconds_per_iteration", t_solver, "s"),
        ("oracle_seconds", t_oracle, "s (operator + K workers' noise)"),
        ("quantize_encode_seconds", t_qe, "s (K calls)"),
        ("overhead_ratio", t_solver / t_parts, "x (target <= 1.1)"),
        ("bits_per_worker_per_iteration", res.bits_per_iteration[0].mean() / K, "bits"),
    ]
    noise1 = NoiseModel("absolute", 1.0)
    for dd, TT in ((1_000, 4000 if not args.quick else 1000), (d, 4 * T)):
        prob = layered_problem([block] * (dd // block), [1.0] * (dd // block), seed=0)

        def ours(n, prob=prob):
            return solve(prob, SolverConfig(method="qoda", K=K, T=n, noise=noise1, record=2, bits="stream"))

        def plain(n, prob=prob):
            return plain_optda(prob, K, n)

        t_q = marginal(ours, TT)
        t_p = marginal(plain, TT)
        rows += [
            (f"d={dd} uncompressed QODA seconds per iteration", t_q, "s (solve, one replica)"),
            (f"d={dd} plain NumPy OptDA seconds per iteration", t_p, "s"),
            (f"d={dd} qoda_over_plain", t_q / t_p, "x (target <= 1)"),
        ]
    report("solver", rows, {"quick": args.quick})


if __name__ == "__main__":
    main()
