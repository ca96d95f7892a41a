"""Level optimizers behind one interface: data or a distribution in, :class:`~qodasim.Levels` out.

``optimize_levels(source, alpha, method)`` with ``method`` one of

* ``"exact"`` — the exact optimum for empirical data (QUIVER, Ben-Basat et al. 2024): a DP over the
  sorted distinct values with O(1) interval costs from prefix sums and monotone-minima row minima,
  ``O(α·n log n)``, run on certified windows around the optimum **[ours]**
  (``qodasim.optimize._prune``).  The optimal levels of an empirical distribution lie on data points.
* ``"histogram"`` — the same DP restricted to levels on an ``m``-point grid, with the data's exact
  per-bin sums, ``O(n + α·m log m)``.  Its expected variance exceeds the exact optimum by at most
  ``(1/m)(1 + 1/m)`` **[ours]**: moving each optimal level up to the grid changes ``φ`` of any point
  by at most ``h·w ≤ h(1 + h)`` (``h = 1/m``, ``w`` the width of its interval), and the DP over the
  grid can only do better than that moved sequence.
* ``"alq"`` — ALQ coordinate descent (Faghri et al. 2020), each level set in closed form with its
  neighbours fixed: ``ℓ_j ← F^{-1}(F(b) − (1/(b−a))∫_a^b (r − a) dF(r))``, restarted from uniform,
  exponential and quantile sequences (works on any :class:`Distribution`).
* ``"amq"`` — AMQ: the best exponential sequence ``(0, p^α, …, p, 1)``, a 1-D search over ``p``.

Degenerate inputs: all-zero data or a single distinct value give Ψ = 0 with uniform levels
(every point sits on a level); more levels than distinct interior points place a level on every
point and fill the rest at the midpoints of the widest gaps (Ψ = 0); NaN/Inf or values outside
``[0, 1]`` raise ``ValueError``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize as sopt

from ..levels import MAX_INTERVALS, Levels
from ..validate import check_int
from . import _dp, _prune
from .distributions import Distribution, Empirical, psi

__all__ = ["LevelResult", "optimize_levels", "exact_levels", "histogram_levels", "alq_levels", "amq_levels",
           "brute_force_levels", "histogram_error_bound", "LEVEL_METHODS", "METHODS"]  # fmt: skip

#: Level-optimization methods of :func:`optimize_levels`.
LEVEL_METHODS = ("exact", "histogram", "alq", "amq")
#: The old name of :data:`LEVEL_METHODS` (kept for one release; it was a second ``METHODS`` beside
#: :data:`qodasim.solvers.METHODS`, the solvers' methods).
METHODS = LEVEL_METHODS


@dataclass(frozen=True)
class LevelResult:
    """An optimized level sequence and its expected normalized variance ``Ψ`` under the source."""

    levels: Levels
    psi: float
    method: str
    info: dict = field(default_factory=dict)


def _check_alpha(alpha) -> int:
    check_int(alpha, "alpha", 0)
    if alpha >= MAX_INTERVALS:
        raise ValueError(f"alpha must be below {MAX_INTERVALS} (a level table's limit), got {alpha}")
    return int(alpha)


def _as_samples(source) -> np.ndarray:
    if isinstance(source, Empirical):
        return source.x
    if isinstance(source, Distribution):
        raise TypeError("this method needs data (samples or an Empirical), not a fitted distribution")
    r = np.asarray(source, np.float64).ravel()
    if r.size == 0:
        raise ValueError("data must be non-empty")
    if not np.all(np.isfinite(r)):
        raise ValueError("data contain NaN or Inf")
    if r.min() < 0.0 or r.max() > 1.0:
        raise ValueError("data must be normalized magnitudes in [0, 1] (see normalized_magnitudes)")
    return r


def _fill_levels(points: np.ndarray, alpha: int) -> Levels:
    """``alpha`` interior levels containing every interior point (fewer points than levels): the rest
    at midpoints, each splitting the widest gap (the leftmost of equal ones), ``O(α log α)`` with a heap
    of the gaps."""
    import heapq

    inner = np.unique(points[(points > 0) & (points < 1)])
    grid = np.concatenate([[0.0], inner, [1.0]])
    heap = [(-(b - a), a, b) for a, b in zip(grid[:-1].tolist(), grid[1:].tolist())]
    heapq.heapify(heap)
    added = []
    for _ in range(alpha - inner.size):
        _, a, b = heapq.heappop(heap)
        m = 0.5 * (a + b)
        added.append(m)
        heapq.heappush(heap, (-(m - a), a, m))
        heapq.heappush(heap, (-(b - m), m, b))
    return Levels.from_interior(np.sort(np.concatenate([inner, added])))


def _prefix(values: np.ndarray, weights: np.ndarray):
    W = np.concatenate([[0.0], np.cumsum(weights)])
    B = np.concatenate([[0.0], np.cumsum(weights * values)])
    G = np.concatenate([[0.0], np.cumsum(weights * values * values)])
    return W, B, G


def _empirical_candidates(source):
    emp = source if isinstance(source, Empirical) else Empirical(_as_samples(source))
    x, w = emp.x, np.diff(emp.W)
    # x is sorted, distinct and inside [0, 1]: add the end points 0 and 1 where missing (no re-sort)
    lo, hi = int(not x[0] == 0.0), int(not x[-1] == 1.0)
    pts = np.empty(x.size + lo + hi)
    pts[lo : lo + x.size] = x
    pts[0] = 0.0  # also turns a sample −0.0 into the +0.0 that np.unique of [0, x, 1] kept
    if hi:
        pts[-1] = 1.0
    wts = np.zeros(pts.size)
    wts[lo : lo + x.size] = w
    return emp, pts, wts


def exact_levels(source, alpha: int, quadratic: bool = False, prune: bool = True) -> LevelResult:
    """The exact optimum ``argmin Ψ`` over ``alpha`` interior levels for empirical data.

    The end levels are fixed at ``ℓ_0 = 0`` and ``ℓ_{α+1} = 1`` — the quantizer's levels for
    normalized magnitudes ``r ∈ [0, 1]`` — and ``alpha`` counts the *interior* levels.  QUIVER
    (Ben-Basat et al. 2024) instead places its end levels at the data's minimum and maximum; to
    compare, note that its ``s`` levels correspond to ``alpha = s − 2`` here when the data contain 0
    and 1 (normalized magnitudes of a vector reach 1 under the ``∞``-norm).

    With ``prune`` (the default; from ``_prune.PRUNE_MIN`` = 2^14 interior candidates on) the DP runs
    only on certified windows — index ranges that hold each level of every optimal sequence, found by
    a lower-bound DP over blocks of candidates (``qodasim.optimize._prune``) — and returns the same levels and
    cost as the full DP, bit for bit on every instance tested; ``info["rows_kept"]`` is the fraction
    of DP rows computed.  Data whose optimal cost is near the cost formula's rounding (within a factor
    1e6 of ``α + 2`` evaluations' rounding, e.g. narrow clusters away from 0, where the formula cancels
    terms much larger than the costs) get the full DP: there both divide and conquers are only
    minima up to rounding and can disagree (measured).
    ``quadratic=True`` runs the straightforward ``O(α n²)`` DP instead (tests).

    Examples
    --------
    >>> import numpy as np
    >>> from qodasim.optimize import exact_levels
    >>> res = exact_levels(np.random.default_rng(0).random(1000), 2)
    >>> res.levels.values.round(4), round(res.psi, 6)
    (array([0.    , 0.3553, 0.6808, 1.    ]), 0.018605)
    """
    alpha = _check_alpha(alpha)
    emp, pts, wts = _empirical_candidates(source)
    n_inner = pts.size - 2
    if n_inner <= alpha:
        lv = _fill_levels(pts, alpha)
        return LevelResult(lv, psi(lv, emp), "exact", {"degenerate": True})
    W, B, G = _prefix(pts, wts)
    info = {"n_distinct": int(emp.n)}
    if quadratic:
        cost, chosen = _dp.dp_levels_quadratic(pts, W, B, G, alpha)
    else:
        win = _prune.windows(pts, wts, W, B, G, alpha) if prune else None
        if win is not None:
            cost, chosen = _dp.dp_levels_windowed(pts, W, B, G, alpha, *win)
            if not _prune.above_noise(pts, W, B, G, alpha, cost):
                win = None  # the optimum is at the rounding-noise level, though the upper bound was not
        if win is None:
            cost, chosen = _dp.dp_levels(pts, W, B, G, alpha)
        else:
            lo, hi = win
            info["rows_kept"] = float((hi[1:] - lo[1:] + 1).sum() / (alpha * (pts.size - 1 - alpha)))
    lv = Levels.from_interior(pts[chosen], name=f"exact(alpha={alpha})")
    return LevelResult(lv, float(cost), "exact", info)


def histogram_error_bound(m: int) -> float:
    """A priori bound on ``Ψ(histogram levels) − Ψ(exact levels)`` for an ``m``-interval grid."""
    return (1.0 / m) * (1.0 + 1.0 / m)


def _weighted_histogram_sums(r: np.ndarray, w: np.ndarray, m: int):
    """:func:`_dp.histogram_sums` with a weight per sample (the same bins: ``(g_{b−1}, g_b]``)."""
    b = np.minimum(np.ceil(r * m), m).astype(np.int64)
    b[(b > 0) & (r <= (b - 1) / m)] -= 1
    b[(b < m) & (r > b / m)] += 1
    return (np.bincount(b, w, m + 1), np.bincount(b, w * r, m + 1), np.bincount(b, w * r * r, m + 1))


def histogram_levels(samples, alpha: int, m: int = 4096, weights=None) -> LevelResult:
    """Optimal levels on the grid ``b/m`` with exact per-bin sums (no sort; ``O(n + α m log m)``).

    ``weights`` (one per sample, non-negative, not all zero) weight each sample's rounding variance:
    ``Σ_i w_i ρ_i(1−ρ_i)(ℓ_{j+1}−ℓ_j)²`` is minimized — e.g. ``w_i = n_g²``, its group's squared norm,
    makes the objective the whole vector's squared error instead of each group's relative one."""
    alpha = _check_alpha(alpha)
    check_int(m, "m", 2)
    r = _as_samples(samples)
    if weights is None:
        cnt, s1, s2 = _dp.histogram_sums(np.ascontiguousarray(r), int(m))
    else:
        w = np.asarray(weights, np.float64).ravel()
        if w.shape != r.shape or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
            raise ValueError("weights must be finite, non-negative, not all zero, one per sample")
        cnt, s1, s2 = _weighted_histogram_sums(r, w, int(m))
    total = cnt.sum()
    grid = np.arange(m + 1) / m
    W = np.concatenate([[0.0], np.cumsum(cnt / total)])
    B = np.concatenate([[0.0], np.cumsum(s1 / total)])
    G = np.concatenate([[0.0], np.cumsum(s2 / total)])
    if m - 1 < alpha:  # the grid b/m has m − 1 interior points
        raise ValueError(f"m = {m} grid intervals have {m - 1} interior points, fewer than alpha = {alpha}; "
                         f"use m >= alpha + 1")  # fmt: skip
    cost, chosen = _dp.dp_levels(grid, W, B, G, alpha)
    lv = Levels.from_interior(grid[chosen], name=f"histogram(alpha={alpha}, m={m})")
    return LevelResult(lv, float(cost), "histogram", {"m": int(m), "error_bound": histogram_error_bound(m)})


def brute_force_levels(samples, alpha: int) -> LevelResult:
    """Exhaustive search over all ``alpha``-subsets of the distinct interior data points (tests only)."""
    alpha = _check_alpha(alpha)
    emp = Empirical(_as_samples(samples))
    inner = emp.x[(emp.x > 0) & (emp.x < 1)]
    if inner.size <= alpha:
        lv = _fill_levels(emp.x, alpha)
        return LevelResult(lv, psi(lv, emp), "brute")
    best, best_lv = np.inf, None
    for comb in itertools.combinations(inner, alpha):
        lv = Levels.from_interior(np.array(comb))
        val = psi(lv, emp)
        if val < best:
            best, best_lv = val, lv
    return LevelResult(best_lv, best, "brute")


def _as_distribution(source) -> Distribution:
    return source if isinstance(source, Distribution) else Empirical(_as_samples(source))


def _alq_sweeps(lv: np.ndarray, dist: Distribution, tol: float, max_sweeps: int) -> tuple[np.ndarray, int]:
    cur = psi(Levels(lv), dist)
    for sweep in range(max_sweeps):
        start = cur
        for j in range(1, lv.size - 1):
            a, b = lv[j - 1], lv[j + 1]
            P, M1, _ = dist.moments(np.array([a]), np.array([b]))
            target = float(dist.cdf(b)) - float(M1[0] - a * P[0]) / (b - a)
            cand = float(np.asarray(dist.ppf(np.clip(target, 0.0, 1.0))).ravel()[0])
            lo, hi = np.nextafter(a, 1.0), np.nextafter(b, 0.0)
            cand = min(max(cand, lo), hi)
            if not (a < cand < b):
                continue
            trial = lv.copy()
            trial[j] = cand
            val = psi(Levels(trial), dist)
            if val <= cur:  # safeguard: coordinate descent never increases Ψ
                lv, cur = trial, val
        if start - cur <= tol * max(start, 1e-300):
            return lv, sweep + 1
    return lv, max_sweeps


def alq_levels(source, alpha: int, restarts=("uniform", "exponential", "quantile"), tol: float = 1e-10,
               max_sweeps: int = 200) -> LevelResult:  # fmt: skip
    """ALQ coordinate descent with closed-form updates and restarts; returns the best result."""
    alpha = _check_alpha(alpha)
    dist = _as_distribution(source)
    if alpha == 0:
        lv = Levels.uniform(1)
        return LevelResult(lv, psi(lv, dist), "alq")
    starts = {
        "uniform": Levels.uniform(alpha + 1).values,
        "exponential": Levels.exponential(alpha).values,
        "quantile": None,
    }
    best = None
    for name in restarts:
        if name not in starts:
            raise ValueError(f"unknown restart {name!r}")
        init = starts[name]
        if init is None:
            q = np.asarray(dist.ppf((np.arange(1, alpha + 1)) / (alpha + 1)), np.float64).ravel()
            q = np.unique(np.clip(q, 1e-12, 1 - 1e-12))
            if q.size != alpha:
                continue
            init = np.concatenate([[0.0], q, [1.0]])
        lv, sweeps = _alq_sweeps(np.array(init, np.float64), dist, tol, max_sweeps)
        val = psi(Levels(lv), dist)
        if best is None or val < best[1]:
            best = (lv, val, name, sweeps)
    lv, val, name, sweeps = best
    return LevelResult(Levels(lv, name=f"alq(alpha={alpha})"), float(val), "alq", {"start": name, "sweeps": sweeps})


def amq_levels(source, alpha: int) -> LevelResult:
    """AMQ: ``p* = argmin_p Ψ(exponential(α, p))`` (grid search, then bounded Brent refinement)."""
    alpha = _check_alpha(alpha)
    dist = _as_distribution(source)
    if alpha == 0:
        lv = Levels.uniform(1)
        return LevelResult(lv, psi(lv, dist), "amq", {"p": None})

    def f(p):
        return psi(Levels.exponential(alpha, p), dist)

    grid = np.linspace(0.02, 0.98, 49)
    vals = [f(p) for p in grid]
    k = int(np.argmin(vals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    res = sopt.minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    p = float(res.x) if res.fun <= vals[k] else float(grid[k])
    lv = Levels.exponential(alpha, p)
    return LevelResult(lv, f(p), "amq", {"p": p})


def optimize_levels(source, alpha: int, method: str = "exact", **kwargs) -> LevelResult:
    """Optimize ``alpha`` interior levels for ``source`` (samples in [0, 1] or a Distribution)."""
    if method == "exact":
        return exact_levels(source, alpha, **kwargs)
    if method == "histogram":
        return histogram_levels(source, alpha, **kwargs)
    if method == "alq":
        return alq_levels(source, alpha, **kwargs)
    if method == "amq":
        return amq_levels(source, alpha, **kwargs)
    raise ValueError(f"method must be one of {LEVEL_METHODS}, got {method!r}")
