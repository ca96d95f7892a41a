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

import functools
from dataclasses import dataclass

import numpy as np

from ..levels import Levels
from ..quantize.norms import vector_norm
from ..validate import check_int
from .closed_form import TRANSMIT_FACTOR, check_dimension
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
    """The tight bound and how close a real vector gets to it.

    Attributes
    ----------
    value : float
        A valid upper bound: ``d·ĝ(1/d)`` (true norm) or ``d·ĝ(c/d)/c`` with ``c = 1/TRANSMIT_FACTOR``
        (transmitted norm, see :func:`tight_variance_bound`).
    attained : float
        ``Σ_i φ_ℓ(|v_i|)`` of the unit vector :func:`adversarial_vector` returns: achieved by a real
        vector with integer counts (``attained ≤ value``; for small ``d`` the gap can be a coordinate's
        worth, ``max_j (ℓ_{j+1} − ℓ_j)²/4``).
    w_left, w_right : float
        The envelope's touching points at ``1/d``.
    d : int
    """

    value: float
    attained: float
    w_left: float
    w_right: float
    d: int


def tight_variance_bound(levels: Levels, d: int, *, transmitted: bool = True) -> TightBound:
    """The tight worst-case normalized variance ``ε_Q(ℓ, d)`` for the Euclidean norm.

    ``transmitted=False``: ``sup_{‖v‖=1} Σ_i φ_ℓ(|v_i|) = d·ĝ(1/d)`` (the idealized quantizer with the
    true norm).  ``transmitted=True`` (default; the quantizer as implemented, THEORY §1): the receiver
    scales by ``n̂ ≥ ‖v‖``, so the normalized variance is ``c⁻¹ Σ φ(r_i)`` with ``Σ r_i² = c`` and
    ``c ∈ [1/TRANSMIT_FACTOR, 1]``; its supremum ``max_c d·ĝ(c/d)/c`` is attained at the smallest
    ``c`` because ``ĝ(x)/x`` is non-increasing (``ĝ`` concave, ``ĝ(0) = 0``).  For ``s = 1`` and
    ``d = 1`` that is ``≈ 2^{-21}`` instead of 0: a vector ``[x]`` has ``r = x/n̂ < 1``.

    Check values (``transmitted=False``): ``s = 1`` gives ``√d − 1``; never above QSGD's
    ``min(d/s², √d/s)``.  The value is never negative (``ĝ ≥ 0``).

    Examples
    --------
    For one interior level (``s = 1``) the tight bound is ``√d − 1`` (THEORY §2), here with the
    transmitted-norm factor ``(1 + 2^{-22})²``:

    >>> from qodasim import Levels
    >>> from qodasim.bounds import tight_variance_bound
    >>> b = tight_variance_bound(Levels.uniform(1), 16)
    >>> round(b.value, 6), round(b.attained, 6)
    (3.000001, 3.0)
    """
    d = check_dimension(d)
    arcs = variance_arcs(levels)
    pt = envelope(arcs, 1.0 / d)  # touching points of the adversarial vector
    value = _tight_value(arcs, d, transmitted, pt)
    counts, ws = _adversarial_parts(levels, d, pt.w_left, pt.w_right)
    attained = float(sum(k * arcs(w) for k, w in zip(counts, ws)))
    return TightBound(value, min(attained, value), pt.w_left, pt.w_right, d)


def _tight_value(arcs: Arcs, d: int, transmitted: bool, pt=None) -> float:
    """``d·ĝ(1/d)`` or, for the transmitted norm, ``d·ĝ(c/d)/c`` (see :func:`tight_variance_bound`)."""
    if transmitted:
        c = 1.0 / TRANSMIT_FACTOR
        return max(0.0, d * envelope(arcs, c / d).value / c)
    return max(0.0, d * (pt or envelope(arcs, 1.0 / d)).value)


def _two_valued(arcs: Arcs, lv: np.ndarray, d: int, counts: np.ndarray, iters: int = 64):
    """For each count ``n_a``: ``max_{w_a} n_a g(w_a) + n_b g(w_b)`` with ``n_a w_a + n_b w_b = 1``.

    ``n_b = d − n_a ≥ 1``.  On each piece between breakpoints (``√w_a`` or ``√w_b`` on a level) both
    terms are concave in ``w_a``, so a golden-section search per piece (every piece of every count at
    once) finds the exact maximum.  Returns ``(values, w_a)``, one per count.
    """
    n_a = np.asarray(counts, np.float64)[:, None]
    n_b = d - n_a
    lo, hi = np.maximum(0.0, (1.0 - n_b) / n_a), 1.0 / n_a
    sq = (lv * lv)[None, :]
    brk = np.sort(np.clip(np.concatenate([lo, hi, np.broadcast_to(sq, (n_a.size, sq.size)), (1.0 - n_b * sq) / n_a],
                                         axis=1), lo, hi), axis=1)  # fmt: skip
    a, b = brk[:, :-1], brk[:, 1:]

    def f(w):
        return n_a * arcs(w) + n_b * arcs((1.0 - n_a * w) / n_b)

    invphi = (np.sqrt(5.0) - 1.0) / 2.0
    c, e = b - invphi * (b - a), a + invphi * (b - a)
    fc, fe = f(c), f(e)
    for _ in range(iters):
        left = fc >= fe  # keep [a, e] (new interior point c) or [c, b] (new interior point e)
        b = np.where(left, e, b)
        a = np.where(left, a, c)
        x_new = np.where(left, b - invphi * (b - a), a + invphi * (b - a))
        f_new = f(x_new)  # one evaluation per iteration
        c, e, fc, fe = (np.where(left, x_new, e), np.where(left, c, x_new),
                        np.where(left, f_new, fe), np.where(left, fc, f_new))  # fmt: skip
    cand = np.concatenate([brk, c, e], axis=1)
    vals = f(cand)
    k = np.argmax(vals, axis=1)
    rows = np.arange(cand.shape[0])
    return vals[rows, k], cand[rows, k]


#: Up to this ``d`` every count is tried (exact best two-valued vector); above, a grid and a refinement.
EXHAUSTIVE_D = 8192


def _count_candidates(d: int, n_a: int) -> np.ndarray:
    """Counts to try: all for ``d ≤ EXHAUSTIVE_D``; else a log/linear grid from both ends plus ``n_a ± 3``."""
    if d <= EXHAUSTIVE_D:
        return np.arange(1, d)
    g = np.round(np.geomspace(1, d - 1, 96)).astype(np.int64)
    grid = np.concatenate([g, d - g, np.round(np.linspace(1, d - 1, 64)).astype(np.int64), np.arange(n_a - 3, n_a + 4)])
    return np.unique(grid[(grid >= 1) & (grid < d)])


#: Largest ``d`` for which :func:`adversarial_vector` materializes the vector (the bound itself has no limit).
MAX_VECTOR_D = 2**28


def adversarial_vector(levels: Levels, d: int, bound: TightBound | None = None) -> np.ndarray:
    """A unit vector with (near-)maximal ``Σ_i φ_ℓ(|v_i|)``: the best two-valued vector found.

    Two constructions, the better one returned:

    1. From the envelope's touching points: with ``1/d = λ w_left + (1 − λ) w_right`` and
       ``λd = n_a + f``: ``n_a`` coordinates at ``√w_left``, ``⌊(1 − λ)d⌋`` at ``√w_right`` and one
       coordinate taking up the rest.  Short of ``d·ĝ(1/d)`` by at most ``max_j (ℓ_{j+1} − ℓ_j)²/4``.
    2. The best vector with two values and integer counts: for each count ``n_a`` (all of them for
       ``d ≤ EXHAUSTIVE_D``, which makes it the exact two-valued optimum; above, a log/linear grid
       refined within ±700 of its best three — the best count can be an isolated spike, so there it is a good
       vector, not a proven optimum), the exact 1-D maximum over the two values on the sphere
       (piecewise concave, ``_two_valued``).

    The vector is normalized by :func:`~qodasim.quantize.vector_norm` (deterministic, not BLAS), so it
    is the same on every machine.  ``d`` is limited to ``MAX_VECTOR_D`` (8192).
    """
    d = check_dimension(d)
    _check_levels(levels)
    if d > MAX_VECTOR_D:
        raise ValueError(f"d: adversarial_vector materializes d coordinates; at most {MAX_VECTOR_D}, got {d}")
    b = bound or tight_variance_bound(levels, d)
    counts, ws = _adversarial_parts(levels, d, b.w_left, b.w_right)
    v = np.repeat(np.sqrt(ws), counts)
    nv = vector_norm(v)
    if nv == 0.0 or not np.isfinite(nv):
        v, nv = np.full(d, 1.0), float(np.sqrt(d))
    return v / nv


@functools.lru_cache(maxsize=256)
def _adversarial_parts(levels: Levels, d: int, wl: float, wr: float) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``(counts, w)`` of the adversarial vector: ``counts[k]`` coordinates at ``√w[k]`` (see above)."""
    arcs = variance_arcs(levels)
    x = 1.0 / d
    lam = 1.0 if wr == wl else (wr - x) / (wr - wl)
    n_a = min(max(int(np.floor(lam * d + 1e-9)), 0), d)
    n_b = min(max(int(np.floor((1.0 - lam) * d + 1e-9)), 0), d - n_a)
    counts, ws = [n_a, n_b], [wl, wr]
    if n_a + n_b < d:
        rest = max(0.0, 1.0 - n_a * wl - n_b * wr)
        counts.append(d - n_a - n_b)
        ws.append(rest / (d - n_a - n_b))
    best = float(sum(c * arcs(w) for c, w in zip(counts, ws)))
    if d > 1 and levels.size <= 4096:
        cand = _count_candidates(d, n_a)
        chunks = [_two_valued(arcs, levels.values, d, cand[i : i + 1024]) for i in range(0, cand.size, 1024)]
        vals, was = np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])
        if d > EXHAUSTIVE_D:  # refine: every count between the grid neighbours of the three best
            top = np.argsort(vals)[-3:]
            near = np.concatenate(
                [
                    np.arange(
                        max(cand[max(i - 1, 0)], cand[i] - 700), min(cand[min(i + 1, cand.size - 1)], cand[i] + 700) + 1
                    )
                    for i in top
                ]
            )
            cand = np.unique(near[(near >= 1) & (near < d)])
            vals, was = _two_valued(arcs, levels.values, d, cand)
        i = int(np.argmax(vals))
        if vals[i] > best:
            k, wa = int(cand[i]), float(was[i])
            counts, ws = [k, d - k], [wa, max(0.0, (1.0 - k * wa) / (d - k))]
    return tuple(counts), tuple(ws)


def _layer_terms(sizes, types, levels) -> tuple[np.ndarray, np.ndarray, list]:
    sizes = np.asarray(sizes, np.int64)
    types = np.asarray(types, np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or np.any(sizes < 1) or sizes.shape != types.shape:
        raise ValueError("sizes and types must be equal-length 1-D arrays with sizes >= 1")
    levels = [levels] * (int(types.max()) + 1) if isinstance(levels, Levels) else list(levels)
    if types.min() < 0 or types.max() >= len(levels):
        raise ValueError(f"types must lie in [0, {len(levels)})")
    return sizes, types, [variance_arcs(lv) for lv in levels]


def layerwise_tight_bound(sizes, types, levels, scope: str = "layer", *, transmitted: bool = True) -> float:
    """Tight worst-case normalized variance of the layer-wise quantizer.

    ``scope="layer"``: ``max_l ε_Q(ℓ^{m(l)}, d_l)``.  ``scope="global"``: with ``Σ_l c_l = c``,
    ``F(c) = max Σ_l d_l ĝ_{m(l)}(c_l/d_l) = min_λ [λc + Σ_l d_l G*_{m(l)}(λ)]`` (exact conjugate dual
    of the concave program) and the bound is ``F(c)/c`` — ``c = 1`` for the true norm, ``c =
    1/TRANSMIT_FACTOR`` for the transmitted one (``F`` concave with ``F(0) = 0``, so ``F(c)/c`` is
    largest at the smallest ``c``; see :func:`tight_variance_bound`).
    """
    sizes, types, arcs = _layer_terms(sizes, types, levels)
    if scope == "layer":
        return max(_tight_value(arcs[m], int(dl), transmitted) for dl, m in zip(sizes, types))
    if scope != "global":
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    weight = np.bincount(types, weights=sizes, minlength=len(arcs))
    c = 1.0 / TRANSMIT_FACTOR if transmitted else 1.0

    def dual(lam: float) -> float:
        return lam * c + sum(float(wt) * conjugate(arcs[m], lam) for m, wt in enumerate(weight) if wt > 0)

    lam = minimize_convex(dual, 0.0, 1.0)
    return max(0.0, float(dual(lam)) / c)


def layerwise_tight_bound_lp(
    sizes, types, levels, n_knots: int = 64, solver: str | None = None, *, transmitted: bool = True
) -> tuple[float, float]:
    """The global-norm layer-wise bound as linear programs in cvxpy: ``(lower, upper)``.

    In the variables ``c_l`` (layer ``l``'s share of ``‖v‖²``, ``Σ c_l = c``) and ``τ_l = d_l ĝ(c_l/d_l)``,
    each layer's ``ĝ`` is represented at ``n_knots`` knots ``κ_k`` of ``c_l ∈ [0, 1]`` (geometric,
    1e-9 to 1 — so knots sit where that layer's share can be, ``w = κ/d_l``, whatever ``d_l``): by
    its tangents ``τ_l ≤ d_l ĝ(κ_k/d_l) + λ_k (c_l − κ_k)`` (upper LP) and by the chords between knots
    (lower LP, convex combinations).  Every coefficient is ``O(1)`` to ``O(√d)`` whatever the layer
    sizes (a layer of 10^6 coordinates made the unscaled program fail), and both values bracket
    :func:`layerwise_tight_bound` (same ``transmitted``: ``c = 1/TRANSMIT_FACTOR`` and the value
    divided by ``c``), tightening as ``n_knots`` grows.
    """
    import cvxpy as cp

    from ..optimize.solvers import solve

    check_int(n_knots, "n_knots", 2)
    sizes, types, arcs = _layer_terms(sizes, types, levels)
    c_tot = 1.0 / TRANSMIT_FACTOR if transmitted else 1.0
    kappa = np.unique(np.concatenate([np.geomspace(1e-9, 1.0, n_knots), [1.0]]))
    n = sizes.size
    val, lam = np.zeros((n, kappa.size)), np.zeros((n, kappa.size))
    for l in range(n):
        dl = float(sizes[l])
        for k, kk in enumerate(kappa):
            pt = envelope(arcs[int(types[l])], kk / dl)
            val[l, k], lam[l, k] = dl * pt.value, pt.lam
    c = cp.Variable(n, nonneg=True)
    tau = cp.Variable(n)
    cons_u = [cp.sum(c) == c_tot, c <= 1]
    for l in range(n):
        fin = np.isfinite(lam[l])
        cons_u.append(tau[l] <= val[l, fin] + cp.multiply(lam[l, fin], c[l] - kappa[fin]))
    upper = solve(cp.Problem(cp.Maximize(cp.sum(tau)), cons_u), solver).value
    # lower: c_l = Σ_k μ_lk κ_k with μ_l in the simplex (κ_0 = 0, ĝ(0) = 0); value Σ_k μ_lk d_l ĝ(κ_k/d_l)
    kk0 = np.concatenate([[0.0], kappa])
    val0 = np.concatenate([np.zeros((n, 1)), val], axis=1)
    mu = cp.Variable((n, kk0.size), nonneg=True)
    cons_l = [cp.sum(mu, axis=1) == 1, cp.sum(mu @ kk0) == c_tot]
    lower = solve(cp.Problem(cp.Maximize(cp.sum(cp.multiply(val0, mu))), cons_l), solver).value
    return float(lower) / c_tot, float(upper) / c_tot
