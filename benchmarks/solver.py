"""QODA with K = 16 workers, d = 10^5, layer-wise 4-bit quantization with encoding.

Reports the marginal seconds per iteration of the full solver (runs of 10 and 60 iterations, so that
one-off setup such as the restricted gap's eigen-decompositions cancels) and the ratio to the sum of
its parts: one oracle call (operator + the K workers' noise) plus K quantize + encode calls on vectors
of the same size (``overhead_ratio``, target (issue 15) ≤ 1.1×); also the server's one-pass sum of the
K dequantized messages (``dequantize_sum``) and the ratio with it among the parts.  The solver's runs
and the parts take turns in every round (``interleaved_times``; the best round of each counts), so a
slow spell of this shared machine hits all of them alike.  ``--quick``: d = 10^4, K = 4.

Second part (issue 15): one replica of *uncompressed* QODA through :func:`solve` against a plain NumPy
optimistic dual averaging loop of the same problem, written here (operator, the K workers' Gaussian
noise from one generator, the adaptive step, the dual update — nothing else), at d = 10^3 and the
benchmark's d, marginal seconds per iteration, the two alternating.  Target: ``qoda_over_plain`` ≤ 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_times, parser, report  # noqa: E402

from qodasim import Key  # noqa: E402
from qodasim.coding import Encoder  # noqa: E402
from qodasim.quantize import dequantize_sum  # noqa: E402
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


def marginals(fns: dict, T: int, repeats: int = 3) -> dict[str, float]:
    """Seconds per iteration of each ``fns[name](T)`` net of one-off setup: ``(t(T) − t(T/2)) / (T − T/2)``,
    each time the best of ``repeats`` runs (the minimum of each length, not of noisy differences,
    which is biased low on a busy machine).  All runs of all functions take turns in every round
    (:func:`interleaved_times`), so a slow spell of the machine hits every function alike."""
    for fn in fns.values():
        fn(max(T // 10, 2))  # warm-up
    calls = {}
    for name, fn in fns.items():
        calls[name + " short"] = lambda fn=fn: fn(T // 2)
        calls[name + " long"] = lambda fn=fn: fn(T)
    times = interleaved_times(calls, repeats, warmup=0)
    return {name: (min(times[name + " long"]) - min(times[name + " short"])) / (T - T // 2) for name in fns}


def per_call(fn, calls: int):
    """``fn`` run ``calls`` times; timed as one, divided by ``calls`` by the caller."""

    def run():
        for _ in range(calls):
            fn()

    return run


def main() -> None:
    args = parser(__doc__).parse_args()
    # two run lengths T_short and T (the difference, 50 iterations, is well above the machine's jitter)
    d, K, T, T_short = (10_000, 4, 20, 4) if args.quick else (100_000, 16, 60, 10)
    block = 100
    n_blocks = d // block
    rng = np.random.default_rng(0)
    scales = np.exp(rng.uniform(-3, 3, n_blocks))
    types = (np.log(scales) > 0).astype(int)  # two types: small- and large-scale blocks
    problem = layered_problem([block] * n_blocks, scales, types=types, seed=0)
    noise = NoiseModel("absolute", 1.0)
    cfg = SolverConfig(method="qoda", K=K, T=T, compression="layerwise", levels=("uniform:15", "exponential:14"),
                       noise=noise, record=1, bits="stream")  # fmt: skip
    X = problem.x0()[None, :] + 0.1
    quant = _make_quantizer(problem, cfg)
    V = noise.sample(problem.operator(X), K, 0, 1)[0]
    encs = [Encoder() for _ in range(K)]
    keys = [Key(0, k, 1) for k in range(K)]

    def quantize_encode():  # the workers' side: K quantize + encode calls
        for k in range(K):
            encs[k].encode(quant.quantize(V[k], keys[k]))

    qvs = quant.quantize_batch(V, keys)
    n_parts = 5  # the parts are timed over 5 calls each, in the same rounds as the solver's runs
    parts = {
        "oracle": per_call(lambda: noise.sample(problem.operator(X), K, 0, 1), n_parts),
        "quantize_encode": per_call(quantize_encode, n_parts),
        "dequantize_sum": per_call(lambda: dequantize_sum(qvs, K), n_parts),
    }

    def run(n):
        return solve(problem, SolverConfig(**{**cfg.to_dict(), "T": n, "noise": noise}))

    assert run(2).status == "ok"  # warm-up (compilation)
    times = interleaved_times({"short": lambda: run(T_short), "long": lambda: run(T), **parts}, args.repeats or 5)
    # marginal cost per iteration: two run lengths, so one-off setup (gap eigen-decompositions) cancels
    t_solver = (min(times["long"]) - min(times["short"])) / (T - T_short)
    t_oracle, t_qe, t_ds = (min(times[k]) / n_parts for k in ("oracle", "quantize_encode", "dequantize_sum"))
    res = run(T)
    assert res.status == "ok"
    t_parts = t_oracle + t_qe
    rows = [
        ("d", float(d), "coordinates"),
        ("K", float(K), "workers"),
        ("solver_seconds_per_iteration", t_solver, "s"),
        ("oracle_seconds", t_oracle, "s (operator + K workers' noise)"),
        ("quantize_encode_seconds", t_qe, "s (K calls)"),
        ("dequantize_sum_seconds", t_ds, "s (the server's sum of the K dequantized messages)"),
        ("overhead_ratio", t_solver / t_parts, "x (over oracle + quantize/encode; target <= 1.1)"),
        ("overhead_ratio_with_sum", t_solver / (t_parts + t_ds), "x (over oracle + quantize/encode + sum)"),
        ("bits_per_worker_per_iteration", res.bits_per_iteration[0].mean() / K, "bits"),
    ]
    noise1 = NoiseModel("absolute", 1.0)
    for dd, TT in ((1_000, 4000 if not args.quick else 1000), (d, 160 if not args.quick else 400)):
        prob = layered_problem([block] * (dd // block), [1.0] * (dd // block), seed=0)

        def ours(n, prob=prob):
            return solve(prob, SolverConfig(method="qoda", K=K, T=n, noise=noise1, record=2, bits="stream"))

        def plain(n, prob=prob):
            return plain_optda(prob, K, n)

        m = marginals({"ours": ours, "plain": plain}, TT, args.repeats or 3)
        t_q, t_p = m["ours"], m["plain"]
        rows += [
            (f"d={dd} uncompressed QODA seconds per iteration", t_q, "s (solve, one replica)"),
            (f"d={dd} plain NumPy OptDA seconds per iteration", t_p, "s"),
            (f"d={dd} qoda_over_plain", t_q / t_p, "x (target <= 1)"),
        ]
    report("solver", rows, {"quick": args.quick})


if __name__ == "__main__":
    main()
