"""Optimal level sequences: timing of the exact DP and the histogram variant.

* exact optimal 16-level sequence (α = 14) for n = 2^20 samples (sort + unique + monotone-minima DP);
  target < 1 s (QUIVER's C++ reports < 1 s);
* histogram variant (m = 4096 grid, exact per-bin sums) for n = 2^24; target < 150 ms (~70 ms in
  QUIVER's C++);
* speed-up of the monotone-minima DP over the straightforward O(α·n²) DP on n = 2^12;
* ``exact_over_sort``: the whole exact call (from unsorted data) over ``np.sort`` of the same data,
  the two in turns in every round (issue 15's target: ≤ 40 at n = 2^20, α = 14), with its parts (the
  candidates: one sort, distinct values, counts, prefix sums; the certified windows; the DP on them)
  and the full DP without windows for comparison.

``--quick``: n = 2^18 / 2^20 / 2^10.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, interleaved_times, parser, report, round_ratios  # noqa: E402

from qodasim.optimize import _dp, _prune, exact_levels, histogram_levels, normalized_magnitudes  # noqa: E402
from qodasim.optimize import levels as _levels  # noqa: E402


def main() -> None:
    args = parser(__doc__).parse_args()
    n_exact, n_hist, n_quad = (2**18, 2**20, 2**10) if args.quick else (2**20, 2**24, 2**12)
    repeats = args.repeats or (3 if args.quick else 7)
    rng = np.random.default_rng(0)
    alpha = 14
    r_exact = normalized_magnitudes(rng.standard_normal(n_exact))
    r_hist = normalized_magnitudes(rng.standard_normal(n_hist).astype(np.float64))
    r_quad = normalized_magnitudes(rng.standard_normal(n_quad))
    # the whole call and its baseline take turns in every round: their ratio compares times side by side
    fns = {"exact": lambda: exact_levels(r_exact, alpha), "sort": lambda: np.sort(r_exact)}
    times = interleaved_times(fns, repeats)
    t_exact, t_sort = min(times["exact"]), min(times["sort"])
    ratio_lo, ratio_med, ratio_hi = round_ratios(times, "exact", "sort")
    t_cand = best_time(lambda: _levels._empirical_candidates(r_exact), repeats)
    _, pts, wts = _levels._empirical_candidates(r_exact)
    W, B, G = _levels._prefix(pts, wts)
    t_dp = best_time(lambda: _dp.dp_levels(pts, W, B, G, alpha), repeats)
    t_win = best_time(lambda: _prune.windows(pts, wts, W, B, G, alpha), repeats)
    lo, hi = _prune.windows(pts, wts, W, B, G, alpha)
    t_dpw = best_time(lambda: _dp.dp_levels_windowed(pts, W, B, G, alpha, lo, hi), repeats)
    pruned, full = exact_levels(r_exact, alpha), exact_levels(r_exact, alpha, prune=False)
    assert pruned.psi == full.psi and np.array_equal(pruned.levels.values, full.levels.values)
    kept = pruned.info["rows_kept"]
    t_hist = best_time(lambda: histogram_levels(r_hist, alpha, 4096), repeats)
    t_fast = best_time(lambda: exact_levels(r_quad, alpha), repeats)
    t_quad = best_time(lambda: exact_levels(r_quad, alpha, quadratic=True), 1)
    e = exact_levels(r_quad, alpha)
    q = exact_levels(r_quad, alpha, quadratic=True)
    assert np.isclose(e.psi, q.psi, rtol=1e-12)
    rows = [
        ("exact_n", float(n_exact), "samples"),
        ("exact_seconds", t_exact, "s (target < 1)"),
        ("sort_seconds", t_sort, "s (np.sort of the same data)"),
        ("candidates_seconds", t_cand, "s (sort, distinct values, counts)"),
        ("windows_seconds", t_win, "s (certified windows: block bounds, upper bound, tolerance)"),
        ("windowed_dp_seconds", t_dpw, "s (DP on the windows)"),
        ("rows_kept", kept, "fraction of DP rows computed"),
        ("dp_seconds", t_dp, "s (full monotone-minima DP, no windows)"),
        ("exact_over_sort", t_exact / t_sort, "x (best over best; target <= 40 at n = 2^20)"),
        ("exact_over_sort_rounds_min", ratio_lo, "x (the same ratio within each round: min)"),
        ("exact_over_sort_rounds_median", ratio_med, "x (median)"),
        ("exact_over_sort_rounds_max", ratio_hi, "x (max)"),
        ("histogram_n", float(n_hist), "samples"),
        ("histogram_seconds", t_hist, "s (target < 0.15)"),
        ("quadratic_n", float(n_quad), "samples"),
        ("quadratic_dp_seconds", t_quad, "s (O(alpha n^2))"),
        ("monotone_dp_seconds", t_fast, "s (same n)"),
        ("speedup_over_quadratic", t_quad / t_fast, "x"),
    ]
    report("levels", rows, {"quick": args.quick, "alpha": alpha, "grid_m": 4096})


if __name__ == "__main__":
    main()
