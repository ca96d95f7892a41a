"""Restricted gaps (THEORY §5): exact for affine operators, sampled for the others.

The restricted gap ``Gap_C(x̂) = sup_{x∈C} ⟨A(x), x̂ − x⟩`` on a ball ``C = B(c, r)``.  For an affine
``A(x) = Mx + b`` the objective is the concave quadratic ``−xᵀSx + xᵀ(Mᵀx̂ − b) + bᵀx̂`` (``S`` the
symmetric part of ``M``), so the sup is a trust-region subproblem: exact through the eigenvectors
of ``S`` (per block) and a monotone secular equation for the multiplier.  The problems choose their
gap (:meth:`qodasim.vi.Problem.gap_measure`); this module takes them by their members, so it imports
none of them.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize as sopt

__all__ = ["RestrictedGap", "restricted_gap_sampled"]


class RestrictedGap:
    """Exact restricted gap of an :class:`AffineProblem` on the ball ``B(center, radius)``.

    Eigen-decompositions of the blocks' symmetric parts are computed once; each evaluation costs a
    few block matrix products and a 1-D root find per replica.
    """

    def __init__(self, problem, center: np.ndarray, radius: float):
        if not all(hasattr(problem, a) for a in ("blocks", "b", "offsets")):
            raise TypeError("RestrictedGap needs an AffineProblem (use restricted_gap_sampled otherwise)")
        self.p = problem
        self.c = np.asarray(center, np.float64).ravel()
        if self.c.size != problem.d:
            raise ValueError("center has the wrong dimension")
        if not (np.isfinite(radius) and radius > 0):
            raise ValueError(f"radius must be positive, got {radius!r}")
        self.r = float(radius)
        self.eig = [np.linalg.eigh((B + B.T) / 2) for B in problem.blocks]

    def __call__(self, Xhat: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(Xhat, np.float64))
        p, c = self.p, self.c
        R = X.shape[0]
        # f(c + z) = const + hᵀz − zᵀSz with h = Mᵀx̂ − b − 2Sc; const = −cᵀSc + cᵀ(Mᵀx̂ − b) + bᵀx̂
        lam_all, ht_all, const = [], [], np.zeros(R)
        for (lam, Q), B, s, e in zip(self.eig, p.blocks, p.offsets[:-1], p.offsets[1:]):
            xb, cb, bb = X[:, s:e], c[s:e], p.b[s:e]
            S = (B + B.T) / 2
            g = xb @ B - bb  # (Mᵀx̂)ᵀ rows
            Sc = S @ cb
            const += -cb @ Sc + g @ cb + xb @ bb
            h = g - 2 * Sc
            lam_all.append(np.broadcast_to(np.clip(lam, 0.0, None), (R, lam.size)))
            ht_all.append(h @ Q)
        lam = np.concatenate(lam_all, axis=1)
        ht = np.concatenate(ht_all, axis=1)
        out = np.empty(R)
        for i in range(R):
            out[i] = const[i] + _trust_region_max(lam[i], ht[i], self.r)
        return out


def _trust_region_max(lam: np.ndarray, h: np.ndarray, r: float) -> float:
    """``max_{‖z‖ ≤ r} hᵀz − Σ λ_i z_i²`` with ``λ ≥ 0`` (exact up to the root finder's precision).

    The problem is solved for ``(h, λ)/σ`` with ``σ = max(‖h‖, r·max λ)`` and the value scaled back
    (the maximum is homogeneous of degree one in ``(h, λ)``), so huge or tiny problems neither
    overflow nor underflow in the squares.
    """
    hmax = float(np.max(np.abs(h)))
    if hmax == 0.0:
        return 0.0
    hn = hmax * float(np.linalg.norm(h / hmax))  # scaled: no overflow of Σ h²
    if not np.isfinite(hn):
        raise ValueError("restricted gap: the linear term is not finite (the iterate or the problem overflowed)")
    sigma = max(hn, r * float(np.max(lam, initial=0.0)))
    return sigma * _trust_region_scaled(lam / sigma, h / sigma, r)


def _trust_region_scaled(lam: np.ndarray, h: np.ndarray, r: float) -> float:
    """The trust-region maximum through its Lagrangian dual (strong duality holds for this problem):

    ``max_{‖z‖≤r} hᵀz − Σ λ_i z_i² = min_{ν ≥ 0} g(ν)``, ``g(ν) = ν r² + Σ_i h_i² / (4(λ_i + ν))``

    (terms with ``h_i = 0`` vanish).  ``g`` is convex, a sum of positive terms (no cancellation), and
    every ``ν`` gives an upper bound, so the value is robust in the *hard case* — a singular ``λ``
    with ``h`` (nearly) orthogonal to its null space — where recovering ``z`` from an inexact
    multiplier and rescaling it to the sphere is not (it gave gaps of −11 at a solution).  The
    minimizer is the root of ``g'(ν) = r² − ‖z(ν)‖²``, ``z(ν) = h/(2(λ + ν))``.
    """
    live = h != 0.0
    h2, lamh = h[live] ** 2, lam[live]
    r2 = r * r

    def g(nu: float) -> float:
        with np.errstate(divide="ignore"):
            return float(nu * r2 + np.sum(h2 / (4.0 * (lamh + nu))))

    def gprime(nu: float) -> float:
        with np.errstate(divide="ignore", over="ignore"):
            return float(r2 - np.sum(h2 / (4.0 * (lamh + nu) ** 2)))

    if np.all(lamh > 0) and gprime(0.0) >= 0.0:  # interior optimum z = h/(2λ)
        return g(0.0)
    hi = float(np.sqrt(np.sum(h2))) / (2.0 * r) + 1.0  # ‖z(hi)‖ ≤ ‖h‖/(2 hi) < r
    lo = hi
    while gprime(lo) >= 0.0:  # ends: some live λ_i = 0 here, so g'(ν) → −∞ as ν → 0 (at ν = 0 it is −inf)
        lo *= 1e-3
    nu = sopt.brentq(gprime, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=1000)
    return min(g(nu), g(np.nextafter(nu, np.inf)), g(np.nextafter(nu, 0.0)))


def restricted_gap_sampled(problem, Xhat, center, radius, n_samples: int = 2000, seed: int = 0):
    """A lower estimate of the restricted gap for non-affine problems: max over random points of the
    ball (projected onto the feasible set), refined by projected gradient-free local search.

    Documented as approximate: the sup of a non-concave function is not computed exactly."""
    X = np.atleast_2d(np.asarray(Xhat, np.float64))
    rng = np.random.default_rng(seed)
    c = np.asarray(center, np.float64)
    pts = rng.standard_normal((n_samples, problem.d))
    pts *= (radius * rng.random(n_samples) ** (1 / problem.d) / np.linalg.norm(pts, axis=1))[:, None]
    pts = problem.project(pts + c)
    Apts = problem.operator(pts)
    vals = np.einsum("sd,rd->rs", Apts, X) - np.sum(Apts * pts, axis=1)[None, :]
    return np.maximum(vals.max(axis=1), 0.0)
