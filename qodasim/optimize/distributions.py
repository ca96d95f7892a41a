"""Distributions of normalized magnitudes ``r ∈ [0, 1]`` and the expected variance ``Ψ(ℓ)`` (THEORY §2, §4).

Every distribution exposes ``cdf``, ``ppf`` and the partial moments ``moments(a, b) = (P, M1, M2)``
of ``(a, b]``.  Then, exactly,

``Ψ(ℓ) = ∫ φ_ℓ dF = Σ_j [ −ℓ_jℓ_{j+1}·P_j + (ℓ_j + ℓ_{j+1})·M1_j − M2_j ]``

over the intervals ``(ℓ_j, ℓ_{j+1}]``.  For empirical data the moments come from sorted prefix sums
(QUIVER's ``β``, ``γ``), so ``Ψ`` costs ``O(α log n)`` after an ``O(n log n)`` sort.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize as sopt
from scipy import special, stats

from ..levels import Levels

__all__ = [
    "Distribution",
    "Empirical",
    "TruncatedNormal",
    "Mixture",
    "psi",
    "fit_truncated_normal",
    "fit_mixture",
    "normalized_magnitudes",
]


def normalized_magnitudes(v, q: float = 2.0) -> np.ndarray:
    """``r_i = |v_i| / ‖v‖_q`` (a sample of the distribution a quantizer sees); rejects zero/NaN input.

    The norm is :func:`qodasim.quantize.vector_norm` — the quantizers' own deterministic, scaled
    computation — so no square overflows (``[1e308, 1e308]``) or underflows (``[1e-200]``).
    """
    from ..quantize.norms import vector_norm

    v = np.asarray(v, np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError("v must be a non-empty finite vector")
    n = vector_norm(v, q)
    if n == 0.0:
        raise ValueError("v is the zero vector: its normalized magnitudes are undefined")
    return np.minimum(np.abs(v) / n, 1.0)


class Distribution:
    """Interface: a distribution on ``[0, 1]``."""

    def cdf(self, x):  # pragma: no cover - interface
        """``F(x) = P(r ≤ x)`` (arrays broadcast)."""
        raise NotImplementedError

    def ppf(self, p):  # pragma: no cover - interface
        """The quantile function ``F^{-1}(p)`` (ALQ's closed-form level update uses it, THEORY §4)."""
        raise NotImplementedError

    def moments(self, a, b):  # pragma: no cover - interface
        """``(P, M1, M2)``: mass, ``∫ r dF`` and ``∫ r² dF`` over ``(a, b]`` (arrays broadcast)."""
        raise NotImplementedError


def psi(levels: Levels, dist: Distribution) -> float:
    """``Ψ(ℓ) = E_F[φ_ℓ(r)]``, the expected normalized variance per coordinate (exact)."""
    if not isinstance(levels, Levels):
        raise TypeError(f"levels must be a qodasim.Levels, got {type(levels).__name__}")
    lv = levels.values
    a, b = lv[:-1], lv[1:]
    if hasattr(dist, "interval_psi"):  # integrated directly: no cancellation for narrow distributions
        return float(np.sum(dist.interval_psi(a, b)))
    P, M1, M2 = dist.moments(a, b)
    # include r = 0 in the first interval (its cost is 0 anyway)
    return float(np.sum(-a * b * P + (a + b) * M1 - M2))


def _distinct_counts(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of ``s`` and how often each occurs (as floats) — what
    ``np.unique(s, return_inverse=True)`` and ``np.bincount`` of ones give, from one sort."""
    srt = np.sort(s)
    first = np.empty(srt.size, bool)
    first[0] = True
    np.not_equal(srt[1:], srt[:-1], out=first[1:])
    idx = np.flatnonzero(first)
    counts = np.diff(np.append(idx, srt.size)).astype(np.float64)
    return srt[idx], counts


@dataclass(frozen=True, eq=False)
class Empirical(Distribution):
    """The empirical distribution of samples ``r_i ∈ [0, 1]`` (optionally weighted).

    Stores the sorted distinct values ``x`` with prefix sums ``W`` (weight), ``β = Σ w x`` and
    ``γ = Σ w x²`` (QUIVER's notation), all with a leading 0.
    """

    samples: np.ndarray
    weights: np.ndarray | None = None
    x: np.ndarray = field(init=False, repr=False)
    W: np.ndarray = field(init=False, repr=False)
    beta: np.ndarray = field(init=False, repr=False)
    gamma: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s = np.asarray(self.samples, np.float64).ravel()
        if s.size == 0:
            raise ValueError("samples must be non-empty")
        if not np.all(np.isfinite(s)):
            raise ValueError("samples contain NaN or Inf")
        if s.min() < 0.0 or s.max() > 1.0:
            raise ValueError("samples must lie in [0, 1] (normalized magnitudes)")
        if self.weights is None:  # one sort and linear passes (np.unique's inverse costs an argsort)
            x, wx = _distinct_counts(s)
        else:
            w = np.asarray(self.weights, np.float64).ravel()
            if w.shape != s.shape or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError("weights must be finite, non-negative, not all zero, one per sample")
            x, inv = np.unique(s, return_inverse=True)
            wx = np.bincount(inv, weights=w, minlength=x.size)
        total = wx.sum()
        wx = wx / total
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "W", np.concatenate([[0.0], np.cumsum(wx)]))
        object.__setattr__(self, "beta", np.concatenate([[0.0], np.cumsum(wx * x)]))
        object.__setattr__(self, "gamma", np.concatenate([[0.0], np.cumsum(wx * x * x)]))

    @property
    def n(self) -> int:
        """Number of distinct values."""
        return int(self.x.size)

    def cdf(self, t):
        return self.W[np.searchsorted(self.x, t, side="right")]

    def ppf(self, p):
        p = np.asarray(p, np.float64)
        k = np.clip(np.searchsorted(self.W[1:], p, side="left"), 0, self.x.size - 1)
        return self.x[k]

    def moments(self, a, b):
        ia = np.searchsorted(self.x, a, side="right")
        ib = np.searchsorted(self.x, b, side="right")
        # the first interval also takes r = 0 (mass at 0 contributes φ = 0 but belongs to the law)
        return self.W[ib] - self.W[ia], self.beta[ib] - self.beta[ia], self.gamma[ib] - self.gamma[ia]


_GL_X, _GL_W = np.polynomial.legendre.leggauss(48)


def log_ndtr_diff(lo, hi) -> np.ndarray:
    """``log(Φ(hi) − Φ(lo))`` for ``lo ≤ hi`` without cancellation (elementwise).

    Both in the lower tail: ``log Φ(hi) + log1p(−e^{log Φ(lo) − log Φ(hi)})``; both in the upper
    tail: the same by symmetry; straddling 0: ``(erf(hi/√2) − erf(lo/√2))/2``, a sum of magnitudes.
    """
    lo, hi = np.broadcast_arrays(np.asarray(lo, np.float64), np.asarray(hi, np.float64))
    flip = lo >= 0.0
    a = np.where(flip, -hi, lo)
    b = np.where(flip, -lo, hi)  # now a ≤ b and a < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        lb, la = special.log_ndtr(b), special.log_ndtr(a)
        tail = lb + np.log1p(-np.exp(la - lb))
        mid = np.log((special.erf(b / np.sqrt(2.0)) - special.erf(a / np.sqrt(2.0))) / 2.0)
    return np.where(b <= 0.0, tail, mid)


@dataclass(frozen=True)
class TruncatedNormal(Distribution):
    """Normal ``N(μ, σ²)`` truncated to ``[0, 1]`` (ALQ's model of normalized magnitudes).

    Any ``μ`` and ``σ > 0`` — also ``μ`` many ``σ`` outside ``[0, 1]``, where fitted magnitudes often
    land.  Masses use ``log_ndtr_diff``; the moments and the per-interval variance
    ``∫_a^b (b − r)(r − a) dF`` are integrals of positive functions of the density scaled by its
    maximum on ``[0, 1]`` (no overflow, no cancellation), by Gauss–Legendre quadrature on pieces that
    are monotone (split at the mode) and cut to the density's length scale ``σ²/(|e − μ| + σ)`` at
    their high end ``e`` (beyond 60 length scales the density is below ``e^{-60}`` of its peak).
    """

    mu: float
    sigma: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.mu) and np.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"TruncatedNormal needs finite mu and sigma > 0, got {self.mu}, {self.sigma}")

    @functools.cached_property
    def _law(self):
        a, b = (0.0 - self.mu) / self.sigma, (1.0 - self.mu) / self.sigma
        return stats.truncnorm(a, b, loc=self.mu, scale=self.sigma)

    @functools.cached_property
    def _mode(self) -> float:
        return float(min(max(self.mu, 0.0), 1.0))

    def _density(self, r):
        """The density on ``[0, 1]`` divided by its maximum (at the mode)."""
        s2 = 2.0 * self.sigma * self.sigma
        return np.exp(((self._mode - self.mu) ** 2 - (r - self.mu) ** 2) / s2)

    def _integrals(self, a: float, b: float) -> np.ndarray:
        """``∫_a^b (1, r, r², (b − r)(r − a)) f̃(r) dr`` for the scaled density ``f̃``."""
        out = np.zeros(4)
        if not b > a:
            return out
        m = self._mode
        cuts = [(a, b)] if not a < m < b else [(a, m), (m, b)]
        for p, q in cuts:
            high = p if abs(p - self.mu) <= abs(q - self.mu) else q  # where the density is largest
            scale = self.sigma**2 / (abs(high - self.mu) + self.sigma)
            length = min(q - p, 60.0 * scale)
            lo, hi = (p, p + length) if high == p else (q - length, q)
            r = (hi - lo) / 2.0 * _GL_X + (hi + lo) / 2.0
            w = (hi - lo) / 2.0 * _GL_W * self._density(r)
            out += [w.sum(), w @ r, w @ (r * r), w @ ((b - r) * (r - a))]
        return out

    @functools.cached_property
    def _total(self) -> float:
        return float(self._integrals(0.0, 1.0)[0])

    def cdf(self, x):
        x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
        z0, z1, zx = -self.mu / self.sigma, (1.0 - self.mu) / self.sigma, (x - self.mu) / self.sigma
        return np.exp(log_ndtr_diff(z0, zx) - log_ndtr_diff(z0, z1))

    def ppf(self, p):
        p = np.asarray(p, np.float64)
        flat = np.atleast_1d(p).ravel()
        out = np.empty_like(flat)
        for i, pi in enumerate(flat):
            if pi <= 0.0 or pi >= 1.0:
                out[i] = 0.0 if pi <= 0.0 else 1.0
            else:
                out[i] = sopt.brentq(lambda t, pi=pi: float(self.cdf(t)) - pi, 0.0, 1.0, xtol=1e-15, rtol=1e-15)
        return out.reshape(p.shape) if p.ndim else float(out[0])

    def _table(self, a, b) -> np.ndarray:
        a = np.clip(np.atleast_1d(np.asarray(a, np.float64)), 0.0, 1.0)
        b = np.clip(np.atleast_1d(np.asarray(b, np.float64)), 0.0, 1.0)
        a, b = np.broadcast_arrays(a, b)
        return np.stack([self._integrals(float(x), float(y)) for x, y in zip(a.ravel(), b.ravel())]) / self._total

    def moments(self, a, b):
        t = self._table(a, b)
        shape = np.broadcast(np.asarray(a), np.asarray(b)).shape
        return tuple(t[:, k].reshape(shape) if shape else float(t[0, k]) for k in range(3))

    def interval_psi(self, a, b) -> np.ndarray:
        """``∫_a^b (b − r)(r − a) dF(r)`` per interval, integrated directly (no cancellation)."""
        return self._table(a, b)[:, 3]


@dataclass(frozen=True)
class Mixture(Distribution):
    """A finite mixture ``Σ_k π_k F_k`` of distributions on ``[0, 1]``."""

    components: tuple
    weights: tuple

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, np.float64)
        if len(self.components) != w.size or w.size == 0 or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
            raise ValueError("Mixture needs one non-negative weight per component, summing to 1")

    def cdf(self, x):
        return sum(w * c.cdf(x) for c, w in zip(self.components, self.weights))

    def ppf(self, p):
        p = np.atleast_1d(np.asarray(p, np.float64))
        out = np.empty_like(p)
        for i, pi in enumerate(p):
            if pi <= 0:
                out[i] = 0.0
            elif pi >= 1:
                out[i] = 1.0
            else:
                out[i] = sopt.brentq(lambda t, pi=pi: float(self.cdf(t)) - pi, 0.0, 1.0, xtol=1e-14)
        return out

    def moments(self, a, b):
        parts = [c.moments(a, b) for c in self.components]
        return tuple(sum(w * m[k] for m, w in zip(parts, self.weights)) for k in range(3))


def fit_truncated_normal(samples) -> TruncatedNormal:
    """Maximum-likelihood truncated normal on ``[0, 1]`` for normalized magnitudes.

    The negative log-likelihood ``Σ (x_i − μ)²/(2σ²) + n log σ + n log(Φ((1−μ)/σ) − Φ(−μ/σ))`` (up to
    a constant) uses ``log_ndtr_diff``, so it stays exact when ``μ`` lies many ``σ`` outside
    ``[0, 1]`` (Laplace-like magnitudes fit ``μ < 0``).  Nelder–Mead from several starts (moments,
    a decaying profile with ``μ < 0``, a rising one with ``μ > 1``), polished, the best kept.
    """
    x = np.asarray(samples, np.float64).ravel()
    if x.size < 2 or not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise ValueError("samples must be at least two finite values in [0, 1]")
    if np.ptp(x) == 0:
        raise ValueError("samples have one distinct value: a truncated normal cannot be fitted")
    n, s1, s2 = x.size, float(x.sum()), float(x @ x)

    def nll(theta):
        mu, log_s = theta
        if not (np.isfinite(mu) and -60.0 < log_s < 20.0 and abs(mu) < 1e6):
            return np.inf
        sig = np.exp(log_s)
        quad = (s2 - 2.0 * mu * s1 + n * mu * mu) / (2.0 * sig * sig)
        return float(quad + n * log_s + n * log_ndtr_diff(-mu / sig, (1.0 - mu) / sig))

    sd = max(float(x.std()), 1e-6)
    starts = [(x.mean(), np.log(sd)), (-3.0 * sd, np.log(2.0 * sd)), (1.0 + 3.0 * sd, np.log(2.0 * sd)),
              (float(np.median(x)), np.log(sd))]  # fmt: skip
    best = None
    for st in starts:
        res = sopt.minimize(nll, st, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-10, "maxfev": 3000})
        res = sopt.minimize(nll, res.x, method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-12, "maxfev": 3000})
        if best is None or res.fun < best.fun:
            best = res
    return TruncatedNormal(float(best.x[0]), float(np.exp(best.x[1])))


def fit_mixture(samples, k: int = 2, iters: int = 200, seed: int = 0) -> Mixture:
    """A ``k``-component truncated-normal mixture by EM (responsibilities from the truncated pdfs)."""
    x = np.asarray(samples, np.float64).ravel()
    if k < 1 or x.size < 2 * k:
        raise ValueError("need k >= 1 and at least 2k samples")
    rng = np.random.default_rng(seed)
    mus = np.quantile(x, (np.arange(k) + 0.5) / k) + 1e-3 * rng.standard_normal(k)
    sig = np.full(k, max(x.std(), 1e-3))
    pis = np.full(k, 1.0 / k)
    for _ in range(iters):
        comps = [TruncatedNormal(m, s) for m, s in zip(mus, sig)]
        dens = np.stack([p * c._law.pdf(x) for c, p in zip(comps, pis)]) + 1e-300
        resp = dens / dens.sum(axis=0)
        nk = resp.sum(axis=1)
        pis = nk / x.size
        mus = (resp @ x) / nk
        sig = np.sqrt(np.maximum((resp * (x - mus[:, None]) ** 2).sum(axis=1) / nk, 1e-10))
    return Mixture(tuple(TruncatedNormal(float(m), float(s)) for m, s in zip(mus, sig)), tuple(pis / pis.sum()))
