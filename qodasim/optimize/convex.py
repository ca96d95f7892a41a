"""Convex programs for level design and bit budgets (THEORY §4), in cvxpy with Clarabel.

(a) :func:`bound_optimal_levels` minimizes the simple worst-case bound over log-levels
    ``u_j = log ℓ_j``: ``max_j (cosh(u_{j+1} − u_j) − 1)/2 + d e^{2u_1}/4`` — convex in ``u``.
    (``(τ−1)²/(4τ) = (cosh(log τ) − 1)/2`` for consecutive ratios ``τ``; we use the ``d ℓ_1²/4``
    branch of the ``[0, ℓ_1]`` term.)  By symmetry the optimum is geometric, ``u_j = −(α+1−j)Δ``,
    with ``sinh(Δ)/2 = (dα/2)e^{−2αΔ}`` — the optimality check used in the tests.
(b) :func:`split_bit_budget` minimizes ``Σ_m w_m d_m e^{−2x_m}`` subject to ``Σ_m d_m x_m ≤ B``,
    ``x ≥ 0`` (variance with ``~2^{x_m}`` levels for type ``m``).  KKT gives water-filling,
    ``x_m = max(0, ½ log(2w_m/λ))`` with ``λ`` set by the budget (:func:`split_bit_budget_kkt`).
(c) The tight layer-wise bound LP is :func:`qodasim.bounds.layerwise_tight_bound_lp`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize as sopt

from ..levels import Levels
from .solvers import solve

__all__ = ["BoundOptimal", "bound_optimal_levels", "split_bit_budget", "split_bit_budget_kkt"]


@dataclass(frozen=True)
class BoundOptimal:
    levels: Levels
    value: float
    status: str


def _bound_value(u: np.ndarray, d: int) -> float:
    gaps = np.diff(np.concatenate([u, [0.0]]))
    return float(np.max((np.cosh(gaps) - 1.0) / 2.0) + d * np.exp(2 * u[0]) / 4.0)


def bound_optimal_levels(alpha: int, d: int, solver: str | None = None) -> BoundOptimal:
    """Levels minimizing ``κ + d ℓ_1²/4`` (the simple bound's second branch), by cvxpy."""
    import cvxpy as cp

    if isinstance(alpha, bool) or not isinstance(alpha, (int, np.integer)) or alpha < 1:
        raise ValueError(f"alpha must be an integer >= 1, got {alpha!r}")
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    u = cp.Variable(alpha)
    t = cp.Variable()
    ext = cp.hstack([u, np.zeros(1)])
    gaps = ext[1:] - ext[:-1]
    cons = [gaps >= 1e-9, (cp.exp(gaps) + cp.exp(-gaps)) / 4 - 0.5 <= t]
    prob = cp.Problem(cp.Minimize(t + d * cp.exp(2 * u[0]) / 4), cons)
    solve(prob, solver)
    uu = np.sort(np.asarray(u.value, np.float64))
    lv = Levels.from_interior(np.exp(uu), name=f"bound-optimal(alpha={alpha}, d={d})")
    return BoundOptimal(lv, _bound_value(uu, int(d)), str(prob.status))


def geometric_optimum(alpha: int, d: int) -> tuple[float, float]:
    """The closed-form check for (a): ``Δ`` solving ``sinh(Δ)/2 = (dα/2) e^{−2αΔ}`` and the value."""

    def f(D):
        return np.sinh(D) / 2 - d * alpha / 2 * np.exp(-2 * alpha * D)

    delta = sopt.brentq(f, 1e-12, 50.0, xtol=1e-14)
    return delta, float((np.cosh(delta) - 1) / 2 + d * np.exp(-2 * alpha * delta) / 4)


def split_bit_budget(weights, dims, budget: float, solver: str | None = None) -> np.ndarray:
    """``argmin Σ w_m d_m e^{−2x_m}`` s.t. ``Σ d_m x_m ≤ B``, ``x ≥ 0`` (cvxpy, exponential cone)."""
    import cvxpy as cp

    w, dm = _check_split(weights, dims, budget)
    x = cp.Variable(w.size, nonneg=True)
    prob = cp.Problem(cp.Minimize(cp.sum(cp.multiply(w * dm, cp.exp(-2 * x)))), [dm @ x <= budget])
    solve(prob, solver)
    return np.maximum(np.asarray(x.value, np.float64), 0.0)


def split_bit_budget_kkt(weights, dims, budget: float) -> np.ndarray:
    """Closed-form water-filling solution of :func:`split_bit_budget` (the KKT conditions)."""
    w, dm = _check_split(weights, dims, budget)

    def used(log_lam):
        return float(dm @ np.maximum(0.0, 0.5 * (np.log(2 * w) - log_lam))) - budget

    hi = float(np.log(2 * w.max())) + 1.0
    lo = hi - 10.0
    while used(lo) < 0:
        lo -= 10.0
    log_lam = sopt.brentq(used, lo, hi, xtol=1e-14)
    return np.maximum(0.0, 0.5 * (np.log(2 * w) - log_lam))


def _check_split(weights, dims, budget):
    w = np.asarray(weights, np.float64).ravel()
    dm = np.asarray(dims, np.float64).ravel()
    if w.size == 0 or w.shape != dm.shape:
        raise ValueError("weights and dims must be non-empty and of equal length")
    if np.any(~np.isfinite(w)) or np.any(w <= 0) or np.any(dm <= 0):
        raise ValueError("weights and dims must be positive and finite")
    if not (np.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be positive and finite, got {budget!r}")
    return w, dm
