"""Upper concave envelopes of piecewise functions of ``w = r²`` by exact conjugate duality **[ours]**.

THEORY §2 reduces the tight worst case ``sup_{‖v‖=1} Σ_i g(|v_i|²)`` to ``d·ĝ(1/d)`` where ``ĝ`` is
the upper concave envelope of ``g`` on ``[0, 1]``.  Every ``g`` used here (variance per coordinate,
expected code length per coordinate) is, on each level interval ``u = √w ∈ [ℓ_j, ℓ_{j+1}]``, of the
form ``g(w) = A_j + B_j u − C_j u²`` with ``B_j ≥ 0``, ``C_j ≥ 0`` — concave in ``w`` on each piece.

Rather than sampling ``g`` (a hull of samples is only a *lower* approximation, and ``g`` is steep at
``w = 0``), we use the biconjugate: ``ĝ(x) = min_λ [λx + G*(λ)]`` with
``G*(λ) = max_{w∈[0,1]} g(w) − λw``, and ``G*`` is exact in closed form piece by piece (a concave
quadratic in ``u``).  *Any* ``λ`` gives a valid upper bound ``λx + G*(λ) ≥ ĝ(x)``; minimizing the
convex function of one variable makes it tight.  The maximizers of ``g(w) − λ*w`` on either side of
``x`` are the touching points of the envelope, from which an adversarial vector is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Arcs", "conjugate", "envelope", "EnvelopePoint", "minimize_convex"]


@dataclass(frozen=True)
class Arcs:
    """``g(w) = A_j + B_j √w − C_j w`` for ``√w ∈ [lo_j, hi_j]`` (pieces cover ``[0, 1]`` in order)."""

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def __call__(self, w) -> np.ndarray:
        """Evaluate ``g`` at ``w ∈ [0, 1]``."""
        u = np.sqrt(np.clip(np.asarray(w, np.float64), 0.0, 1.0))
        j = np.clip(np.searchsorted(self.hi, u, side="left"), 0, self.A.size - 1)
        return self.A[j] + self.B[j] * u - self.C[j] * u * u


def _candidates(arcs: Arcs, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """For each piece: the maximizer ``u`` of ``A + Bu − (C+λ)u²`` on ``[lo, hi]`` and its value."""
    k = arcs.C + lam
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(k > 0, arcs.B / (2.0 * k), np.inf)
    u_int = np.clip(stat, arcs.lo, arcs.hi)
    cand_u = np.stack([arcs.lo, arcs.hi, u_int])
    vals = arcs.A + arcs.B * cand_u - k * cand_u * cand_u
    return cand_u.ravel(), vals.ravel()


def conjugate(arcs: Arcs, lam: float) -> float:
    """``G*(λ) = max_{w ∈ [0,1]} g(w) − λ w`` (exact, closed form per piece)."""
    return float(_candidates(arcs, lam)[1].max())


def minimize_convex(f, x0: float = 0.0, step: float = 1.0, iters: int = 200) -> float:
    """Minimizer of a convex function of one variable: bracket by doubling, then golden section."""
    a, b = x0 - step, x0 + step
    fa, f0, fb = f(a), f(x0), f(b)
    while fa < f0:  # expand left
        step *= 2.0
        b, fb = x0, f0
        x0, f0 = a, fa
        a = x0 - step
        fa = f(a)
        if step > 1e300:
            raise ValueError("minimize_convex: function is unbounded below")
    while fb < f0:  # expand right
        step *= 2.0
        a, fa = x0, f0
        x0, f0 = b, fb
        b = x0 + step
        fb = f(b)
        if step > 1e300:
            raise ValueError("minimize_convex: function is unbounded below")
    invphi = (np.sqrt(5.0) - 1.0) / 2.0
    c, e = b - invphi * (b - a), a + invphi * (b - a)
    fc, fe = f(c), f(e)
    for _ in range(iters):
        if fc <= fe:
            b, e, fe = e, c, fc
            c = b - invphi * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, e, fe
            e = a + invphi * (b - a)
            fe = f(e)
        if b - a <= 1e-15 * max(1.0, abs(a) + abs(b)):
            break
    return c if fc <= fe else e


@dataclass(frozen=True)
class EnvelopePoint:
    """The envelope at ``x``: value (a valid upper bound), multiplier, and touching points.

    Attributes
    ----------
    value : float
        ``λ*x + G*(λ*)`` — an upper bound on ``ĝ(x)``, tight up to the 1-D minimization.
    lam : float
        The multiplier (the envelope's slope at ``x``).
    w_left, w_right : float
        Touching points ``w_left ≤ x ≤ w_right`` maximizing ``g(w) − λ*w`` on each side.
    chord : float
        The chord of ``g`` between the touching points at ``x``: an achievable value, so
        ``chord ≤ ĝ(x) ≤ value`` (their gap measures the tightness).
    """

    value: float
    lam: float
    w_left: float
    w_right: float
    chord: float


def envelope(arcs: Arcs, x: float) -> EnvelopePoint:
    """The upper concave envelope ``ĝ(x)`` of ``arcs`` at ``x ∈ (0, 1]``, with touching points."""
    x = float(x)
    if not (0.0 < x <= 1.0):
        raise ValueError(f"x must lie in (0, 1], got {x!r}")
    g1 = float(arcs(1.0))
    if x == 1.0:
        return EnvelopePoint(g1, -np.inf, 1.0, 1.0, g1)
    scale = max(1.0, float(np.max(np.abs(arcs.A)) + np.max(np.abs(arcs.B)) + np.max(np.abs(arcs.C))))
    lam = minimize_convex(lambda t: t * x + conjugate(arcs, t), 0.0, scale)
    value = lam * x + conjugate(arcs, lam)
    cu, cv = _candidates(arcs, lam)
    cw = cu * cu
    left, right = cw <= x, cw >= x
    wl = float(cw[left][np.argmax(cv[left])])
    wr = float(cw[right][np.argmax(cv[right])])
    gl, gr = float(arcs(wl)), float(arcs(wr))
    chord = gl if wr == wl else gl + (gr - gl) * (x - wl) / (wr - wl)
    gx = float(arcs(x))  # all coordinates equal: also achievable
    if gx >= chord:
        chord, wl, wr = gx, x, x
    return EnvelopePoint(float(value), float(lam), wl, wr, float(chord))
