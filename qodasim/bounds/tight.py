"""Tight worst-case variance ``ε_Q(ℓ, d) = sup_{‖v‖=1} Σ_i φ_ℓ(|v_i|)`` **[ours]** (THEORY §2).

With ``w_i = r_i²`` and ``g(w) = φ_ℓ(√w)``, ``ε_Q(ℓ, d) = d·ĝ(1/d)`` (Jensen on the upper concave
envelope, attained up to integer rounding by a vector taking the two touching values).  On
``u ∈ [ℓ_j, ℓ_{j+1}]``, ``φ = (ℓ_{j+1} − u)(u − ℓ_j) = −ℓ_jℓ_{j+1} + (ℓ_j + ℓ_{j+1})u − u²``, so
:mod:`qodasim.bounds.envelope` computes ``ĝ`` exactly by conjugate duality.

Layer-wise (THEORY §2): with per-layer norms ``ε_Q = max_l ε_Q(ℓ^{m(l)}, d_l)``; with one global norm
``ε_Q = max {Σ_l d_l ĝ_{m(l)}(c_l/d_l) : c ≥ 0, Σ c_l = 1} = min_λ [λ + Σ_l d_l G*_{m(l)}(λ)]``
(the same duality; :func:`layerwise_tight_bound_lp` solves the LP form in cvxpy as a cross-check).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..levels import Levels
from .closed_form import check_dimension
from .envelope import Arcs, conjugate, envelope, minimize_convex

__all__ = [
    "variance_arcs",
    "TightBound",
    "tight_variance_bound",
    "adversarial_vector",
    "layerwise_tight_bound",
    "layerwise_tight_bound_lp",
]


def _check_levels(levels) -> Levels:
    if not isinstance(levels, Levels):
        raise TypeError(f"levels must be a qodasim.Levels, got {type(levels).__name__}")
    return levels


def variance_arcs(levels: Levels) -> Arcs:
    """``φ_ℓ(√w)`` as arcs ``A + B u − C u²`` on the level intervals."""
    lv = _check_levels(levels).values
    lo, hi = lv[:-1], lv[1:]
    return Arcs(-lo * hi, lo + hi, np.ones_like(lo), lo, hi)


@dataclass(frozen=True)
class TightBound:
    """``value = d·ĝ(1/d)`` (a valid upper bound) and ``attained = d·chord`` (achievable, ≤ value)."""

    value: float
    attained: float
    w_left: float
    w_right: float
    d: int


def tight_variance_bound(levels: Levels, d: int) -> TightBound:
    """The tight worst-case normalized variance ``ε_Q(ℓ, d)`` for the Euclidean norm.

    Check values: ``s = 1`` gives ``√d − 1``; never above QSGD's ``min(d/s², √d/s)``.
    """
    d = check_dimension(d)
    pt = envelope(variance_arcs(levels), 1.0 / d)
    return TightBound(d * pt.value, d * pt.chord, pt.w_left, pt.w_right, d)


def adversarial_vector(levels: Levels, d: int, bound: TightBound | None = None) -> np.ndarray:
    """A unit vector whose exact variance reaches ``ε_Q(ℓ, d)`` up to one coordinate's worth.

    With ``1/d = λ w_left + (1 − λ) w_right`` and ``λd = n_a + f`` (``0 ≤ f < 1``): ``n_a``
    coordinates at ``√w_left``, ``⌊(1 − λ)d⌋`` at ``√w_right`` and, when ``f > 0``, one coordinate at
    ``√(f w_left + (1 − f) w_right)`` so that ``‖v‖ = 1`` exactly.  The shortfall from ``d·ĝ(1/d)`` is
    at most ``max_w g(w) = max_j (ℓ_{j+1} − ℓ_j)²/4``.
    """
    d = check_dimension(d)
    b = bound or tight_variance_bound(levels, d)
    x = 1.0 / d
    wl, wr = b.w_left, b.w_right
    lam = 1.0 if wr == wl else (wr - x) / (wr - wl)
    n_a = int(np.floor(lam * d + 1e-9))
    n_a = min(max(n_a, 0), d)
    n_b = min(max(int(np.floor((1.0 - lam) * d + 1e-9)), 0), d - n_a)
    parts = [np.full(n_a, wl), np.full(n_b, wr)]
    if n_a + n_b < d:
        rest = max(0.0, 1.0 - n_a * wl - n_b * wr)
        parts.append(np.full(d - n_a - n_b, rest / (d - n_a - n_b)))
    w = np.concatenate(parts)
    v = np.sqrt(w)
    nv = np.linalg.norm(v)
    if nv == 0.0 or not np.isfinite(nv):
        v, nv = np.full(d, 1.0), np.sqrt(d)
    return v / nv


def _layer_terms(sizes, types, levels) -> tuple[np.ndarray, np.ndarray, list]:
    sizes = np.asarray(sizes, np.int64)
    types = np.asarray(types, np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or np.any(sizes < 1) or sizes.shape != types.shape:
        raise ValueError("sizes and types must be equal-length 1-D arrays with sizes >= 1")
    levels = [levels] * (int(types.max()) + 1) if isinstance(levels, Levels) else list(levels)
    if types.min() < 0 or types.max() >= len(levels):
        raise ValueError(f"types must lie in [0, {len(levels)})")
    return sizes, types, [variance_arcs(lv) for lv in levels]


def layerwise_tight_bound(sizes, types, levels, scope: str = "layer") -> float:
    """Tight worst-case normalized variance of the layer-wise quantizer.

    ``scope="layer"``: ``max_l ε_Q(ℓ^{m(l)}, d_l)``.  ``scope="global"``:
    ``min_λ [λ + Σ_l d_l G*_{m(l)}(λ)]`` (exact conjugate dual of the concave program).
    """
    sizes, types, arcs = _layer_terms(sizes, types, levels)
    if scope == "layer":
        return max(int(dl) * envelope(arcs[m], 1.0 / int(dl)).value for dl, m in zip(sizes, types))
    if scope != "global":
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    weight = np.bincount(types, weights=sizes, minlength=len(arcs))

    def dual(lam: float) -> float:
        return lam + sum(float(wt) * conjugate(arcs[m], lam) for m, wt in enumerate(weight) if wt > 0)

    lam = minimize_convex(dual, 0.0, 1.0)
    return float(dual(lam))


def layerwise_tight_bound_lp(sizes, types, levels, n_knots: int = 64, solver: str | None = None) -> tuple[float, float]:
    """The global-norm layer-wise bound as linear programs in cvxpy: ``(lower, upper)``.

    Each ``ĝ_m`` is represented by its exact values ``ĝ_m(w_k)`` and slopes ``λ_k`` at ``n_knots``
    knots (geometric in ``w``): the piecewise-linear interpolation is below ``ĝ_m`` (lower bound LP,
    over convex combinations) and the tangent lines are above it (upper bound LP).  Both bracket
    :func:`layerwise_tight_bound` and tighten as ``n_knots`` grows.
    """
    import cvxpy as cp

    from ..optimize.solvers import solve

    sizes, types, arcs = _layer_terms(sizes, types, levels)
    knots = np.unique(np.concatenate([np.geomspace(1e-9, 1.0, n_knots), [1.0]]))
    pts = {m: [envelope(arcs[m], k) for k in knots] for m in set(types.tolist())}
    n = sizes.size
    c = cp.Variable(n, nonneg=True)
    t = cp.Variable(n)
    # upper: t_l ≤ ĝ(w_k) + λ_k (c_l/d_l − w_k) for every knot (tangents; λ = −inf at w = 1 skipped)
    cons_u = [cp.sum(c) == 1, c <= sizes]
    for l in range(n):
        for k, p in zip(knots, pts[int(types[l])]):
            if np.isfinite(p.lam):
                cons_u.append(t[l] <= p.value + p.lam * (c[l] / sizes[l] - k))
    upper = solve(cp.Problem(cp.Maximize(sizes @ t), cons_u), solver).value
    # lower: c_l/d_l = Σ_k μ_lk w_k with μ_l in the simplex, value Σ_k μ_lk ĝ(w_k) (w_0 = 0, ĝ(0) = 0)
    wk = np.concatenate([[0.0], knots])
    mu = cp.Variable((n, wk.size), nonneg=True)
    gk = np.stack([np.concatenate([[0.0], [p.value for p in pts[int(types[l])]]]) for l in range(n)])
    cons_l = [cp.sum(mu, axis=1) == 1, cp.sum(cp.multiply(sizes[:, None], mu) @ wk) == 1]
    lower = solve(cp.Problem(cp.Maximize(cp.sum(cp.multiply(sizes[:, None] * gk, mu))), cons_l), solver).value
    return float(lower), float(upper)
