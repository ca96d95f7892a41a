"""Quantize throughput: Numba kernels vs a vectorized NumPy quantizer vs ``np.copyto``.

d = 2^24 float32, L2 norm, 16 levels (uniform, s = 15), one norm.  Everything is measured in the same
run; the ratios are what matter.  ``--quick`` uses d = 2^20.

Two like-for-like pairs: ``quantize(v, key, out=(idx, sign))`` writing into existing arrays against
``np.copyto(dst, v)`` (the issue's target), and the allocating ``quantize(v, key)`` against the
allocating ``v.copy()`` — fresh output memory costs page faults in both.  The calls take turns in every
round (``interleaved_times``, 15 rounds); each ratio is reported best over best and within each round
(min / median / max).

``--sizes``: time per call of ``quantize(v, key, out=...)`` for d = 2^4 … 2^24 (``--quick``: … 2^20),
as shipped (the fused one-call path for single-task plans, parallel kernels otherwise) against the
general path with its kernels forced serial and forced parallel (the fused path switched off), the
three in turns over 7 rounds of batches (200 calls for d ≤ 4096), the mean call of each one's best
batch; writes ``benchmarks/results/quantize_sizes_threads<N>.json``.  Run it also under
``NUMBA_NUM_THREADS=1``.  The per-call overhead is the time at d = 16.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, interleaved_times, parser, report, round_ratios  # noqa: E402

from qodasim import Key, Levels, Quantizer  # noqa: E402


def numpy_quantize(v: np.ndarray, levels: np.ndarray, rng: np.random.Generator):
    """A straightforward vectorized NumPy quantizer (the baseline a researcher would write)."""
    norm = np.linalg.norm(v)
    r = np.abs(v) / norm
    j = np.clip(np.searchsorted(levels, r, side="right") - 1, 0, levels.size - 2)
    lo = levels[j]
    rho = (r - lo) / (levels[j + 1] - lo)
    idx = (j + (rng.random(v.size, dtype=np.float32) < rho)).astype(np.uint8)
    return np.float32(norm), idx, np.signbit(v)


def sizes(args) -> None:
    """Time per call across sizes: shipped kernel choice vs forced serial vs forced parallel."""
    from qodasim.quantize import _numba as K
    from qodasim.quantize import _numba_engine as E

    shipped = E._k
    choices = {"shipped": shipped, "serial": lambda plan, name: K.SERIAL[name],
               "parallel": lambda plan, name: getattr(K, name)}  # fmt: skip
    from qodasim.quantize.core import BaseQuantizer

    fast = BaseQuantizer._fast_quantize
    quant, key = Quantizer(Levels.uniform(15)), Key(1)
    rows, worst = [], 0.0
    top = 20 if args.quick else 24
    for log2d in range(4, top + 1, 2):
        d = 2**log2d
        v = np.random.default_rng(log2d).standard_normal(d).astype(np.float32)
        out = (np.empty(d, quant.index_dtype), np.empty(d, np.int8))
        calls = 200 if d <= 4096 else 1 if d >= 2**22 else 10  # calls per timed batch
        rounds = args.repeats or 7

        def batch(label, v=v, out=out, calls=calls):
            def run():
                E._k = choices[label]
                if label != "shipped":  # the general path only: switch the fused one-call path off
                    BaseQuantizer._fast_quantize = lambda self, v, key, out: None
                try:
                    for _ in range(calls):
                        quant.quantize(v, key, out=out)
                finally:
                    E._k, BaseQuantizer._fast_quantize = shipped, fast

            return run

        # the three choices take turns in every round (a busy spell hits all of them); best batch each
        t = interleaved_times({label: batch(label) for label in choices}, rounds, warmup=1)
        times = {label: min(t[label]) / calls for label in choices}
        worst = max(worst, times["shipped"] / times["serial"])
        rows += [(f"d=2^{log2d} shipped_us", times["shipped"] * 1e6, "us per call"),
                 (f"d=2^{log2d} serial_us", times["serial"] * 1e6, "us per call"),
                 (f"d=2^{log2d} parallel_us", times["parallel"] * 1e6, "us per call")]  # fmt: skip
    rows.append(("worst_shipped_over_serial", worst, "x (target <= 1.10)"))
    rows.append(("overhead_us_d16", rows[0][1], "us per call at d = 16 (target <= 10)"))
    import numba

    report(f"quantize_sizes_threads{numba.get_num_threads()}", rows, {"quick": args.quick})


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--sizes", action="store_true", help="time per call across d = 2^4 ... 2^24")
    args = ap.parse_args()
    if args.sizes:
        sizes(args)
        return
    d = 2**20 if args.quick else 2**24
    repeats = args.repeats or (3 if args.quick else 15)
    v = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    levels = Levels.uniform(15)
    quant = Quantizer(levels)
    key = Key(1)
    dst = np.empty_like(v)
    rng = np.random.default_rng(1)

    out = (np.empty(d, quant.index_dtype), np.empty(d, np.int8))
    nonuni = Quantizer(Levels.exponential(14))  # 16 non-uniform levels: the vector search (_simd.search16)
    # the fast calls take turns in every round, so each ratio compares times taken side by side
    times = interleaved_times({
        "nb": lambda: quant.quantize(v, key, out=out), "al": lambda: quant.quantize(v, key),
        "cp": lambda: np.copyto(dst, v), "cc": lambda: v.copy(), "nu": lambda: nonuni.quantize(v, key, out=out),
    }, repeats)  # fmt: skip
    t_nb, t_al, t_cp, t_cc, t_nu = (min(times[k]) for k in ("nb", "al", "cp", "cc", "nu"))
    t_np = best_time(lambda: numpy_quantize(v, levels.values, rng), max(1, repeats // 2))
    nb_lo, nb_med, nb_hi = round_ratios(times, "cp", "nb")
    nu_lo, nu_med, nu_hi = round_ratios(times, "cp", "nu")
    rows = [
        ("d", float(d), "coordinates"),
        ("numba_coords_per_s", d / t_nb, "coord/s (out= arrays)"),
        ("numba_alloc_coords_per_s", d / t_al, "coord/s (fresh output)"),
        ("numpy_coords_per_s", d / t_np, "coord/s"),
        ("copyto_coords_per_s", d / t_cp, "coord/s"),
        ("copy_alloc_coords_per_s", d / t_cc, "coord/s (v.copy())"),
        ("numba_over_numpy", t_np / t_nb, "x (target >= 8)"),
        ("numba_over_copyto", t_cp / t_nb, "x (best over best; target >= 0.4)"),
        ("numba_over_copyto_rounds_min", nb_lo, "x (the same ratio within each round: min)"),
        ("numba_over_copyto_rounds_median", nb_med, "x (median)"),
        ("numba_over_copyto_rounds_max", nb_hi, "x (max)"),
        ("numba_alloc_over_numpy", t_np / t_al, "x"),
        ("nonuniform_coords_per_s", d / t_nu, "coord/s (exponential(14), out= arrays; target >= 1e9)"),
        ("nonuniform_over_copyto", t_cp / t_nu, "x (best over best; target >= 0.4)"),
        ("nonuniform_over_copyto_rounds_min", nu_lo, "x (the same ratio within each round: min)"),
        ("nonuniform_over_copyto_rounds_median", nu_med, "x (median)"),
        ("nonuniform_over_copyto_rounds_max", nu_hi, "x (max)"),
        ("numba_alloc_over_copy_alloc", t_cc / t_al, "x"),
    ]
    report("quantize", rows, {"quick": args.quick})


if __name__ == "__main__":
    main()
