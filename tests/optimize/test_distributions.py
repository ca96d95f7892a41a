"""Magnitude distributions: truncated-normal Ψ against quadrature, the empirical Ψ, the fits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from qodasim import Levels
from qodasim.optimize import (
    Empirical,
    Mixture,
    TruncatedNormal,
    fit_mixture,
    fit_truncated_normal,
    psi,
)


def test_truncated_normal_moments_against_quadrature():
    dist = TruncatedNormal(0.2, 0.15)
    law = dist._law
    for a, b in [(0.0, 0.3), (0.1, 0.9), (0.5, 1.0)]:
        P, M1, M2 = dist.moments(np.array([a]), np.array([b]))
        assert np.isclose(P[0], integrate.quad(law.pdf, a, b)[0], rtol=1e-9)
        assert np.isclose(M1[0], integrate.quad(lambda r: r * law.pdf(r), a, b)[0], rtol=1e-9)
        assert np.isclose(M2[0], integrate.quad(lambda r: r * r * law.pdf(r), a, b)[0], rtol=1e-9)
    lv = Levels.uniform(3)

    def phi(r):
        j = min(int(r * 3), 2)
        return (lv.values[j + 1] - r) * (r - lv.values[j])

    assert np.isclose(psi(lv, dist), integrate.quad(lambda r: phi(r) * law.pdf(r), 0, 1, points=[1 / 3, 2 / 3])[0])


def test_empirical_psi_equals_mean_phi():
    rng = np.random.default_rng(1)
    r = rng.random(1000) ** 3
    lv = Levels.from_interior([0.01, 0.2, 0.7])
    j = np.clip(np.searchsorted(lv.values, r, side="right") - 1, 0, lv.size - 2)
    direct = np.mean((lv.values[j + 1] - r) * (r - lv.values[j]))
    assert np.isclose(psi(lv, Empirical(r)), direct, rtol=1e-12)
    # and equals the quantizer's exact normalized variance summed (per-coordinate mean) for v = r
    assert np.isclose(psi(lv, Empirical(r)) * r.size, np.sum((lv.values[j + 1] - r) * (r - lv.values[j])))


def test_fit_truncated_normal_recovers_parameters():
    rng = np.random.default_rng(3)
    true = TruncatedNormal(0.3, 0.1)
    x = true._law.rvs(20000, random_state=rng)
    fit = fit_truncated_normal(x)
    # MLE standard errors ~ σ/√n ≈ 7e-4; 10 of them
    assert abs(fit.mu - 0.3) < 7e-3 and abs(fit.sigma - 0.1) < 7e-3
    mix = fit_mixture(np.concatenate([x[:10000], TruncatedNormal(0.8, 0.05)._law.rvs(10000, random_state=rng)]), 2)
    mus = sorted(c.mu for c in mix.components)
    assert abs(mus[0] - 0.3) < 0.02 and abs(mus[1] - 0.8) < 0.02
    assert isinstance(mix, Mixture)
    with pytest.raises(ValueError, match="one distinct"):
        fit_truncated_normal(np.full(10, 0.5))


def _psi_by_quadrature(levels, mu: float, sigma: float) -> float:
    """Ψ = Σ_j ∫ (ℓ_{j+1} − r)(r − ℓ_j) f(r) dr with scipy's adaptive quadrature, the truncated log
    density written out, and break points at the density's length scales around its mode."""
    from scipy import integrate

    from qodasim.optimize.distributions import log_ndtr_diff

    log_z = float(log_ndtr_diff(-mu / sigma, (1.0 - mu) / sigma))
    m = min(max(mu, 0.0), 1.0)
    ell = sigma**2 / (abs(m - mu) + sigma)

    def f(r, a, b):
        return (b - r) * (r - a) * np.exp(-((r - mu) ** 2) / (2 * sigma**2) - log_z) / (sigma * np.sqrt(2 * np.pi))

    total = 0.0
    lv = levels.values
    for a, b in zip(lv[:-1], lv[1:]):
        pts = [p for p in (m + k * ell for k in (-30, -10, -3, -1, 0, 1, 3, 10, 30)) if a < p < b]
        total += integrate.quad(f, a, b, args=(a, b), points=pts or None, limit=500, epsabs=0.0, epsrel=1e-11)[0]
    return total


def test_truncated_normal_psi_far_outside_the_unit_interval():
    """NaN for μ = −0.1, σ = 0.01 and μ = 2, σ = 0.02; −1.75e-4 (true 1.89e-5) for a fitted Laplace law."""
    from qodasim import Levels
    from qodasim.optimize import TruncatedNormal, psi

    cases = [(Levels.uniform(4), -0.1, 0.01, 2.433e-4), (Levels.uniform(4), 2.0, 0.02, 9.960e-5),
             (Levels.from_interior([0.0039, 0.0103, 0.0307]), -0.291, 0.039, 1.89e-5)]  # fmt: skip
    for lv, mu, sigma, want in cases:
        got = psi(lv, TruncatedNormal(mu, sigma))
        assert np.isclose(got, want, rtol=2e-3) and np.isclose(got, _psi_by_quadrature(lv, mu, sigma), rtol=1e-8)


def test_truncated_normal_psi_matches_quadrature_on_a_grid():
    """μ ∈ [−2, 3], σ ∈ [1e-3, 1e3] (log-uniform), random levels: relative 1e-7."""
    from qodasim import Levels
    from qodasim.optimize import TruncatedNormal, psi

    rng = np.random.default_rng(4)
    for _ in range(40):
        mu, sigma = float(rng.uniform(-2, 3)), float(10 ** rng.uniform(-3, 3))
        lv = Levels.from_interior(np.sort(rng.uniform(0, 1, int(rng.integers(1, 6)))))
        dist = TruncatedNormal(mu, sigma)
        ref = _psi_by_quadrature(lv, mu, sigma)
        assert np.isclose(psi(lv, dist), ref, rtol=1e-7, atol=1e-300), (mu, sigma)
        P, M1, M2 = dist.moments(lv.values[:-1], lv.values[1:])
        assert np.isclose(P.sum(), 1.0, rtol=1e-10) and np.all(P >= 0) and np.all(M2 <= M1 + 1e-15)
        x = np.linspace(0, 1, 11)
        assert np.all(np.diff(dist.cdf(x)) >= 0) and np.isclose(dist.cdf(1.0), 1.0)
        q = dist.ppf(np.array([0.1, 0.5, 0.9]))
        assert np.allclose(dist.cdf(q), [0.1, 0.5, 0.9], atol=1e-9)


def test_truncated_normal_fit_is_the_likelihood_optimum():
    """On Laplace magnitudes the old fit (μ = −0.314, σ = 0.040) was not the MLE; ours has lower NLL
    than it and than every point of a grid around the answer."""
    from qodasim.optimize import fit_truncated_normal
    from qodasim.optimize.distributions import log_ndtr_diff

    rng = np.random.default_rng(0)
    v = rng.laplace(size=20000)
    r = np.abs(v) / np.linalg.norm(v)

    def nll(mu, s):
        log_z = log_ndtr_diff(-mu / s, (1 - mu) / s)
        return float(np.sum((r - mu) ** 2) / (2 * s * s) + r.size * np.log(s) + r.size * log_z)

    fit = fit_truncated_normal(r)
    assert nll(fit.mu, fit.sigma) < nll(-0.314, 0.040)
    for dm in (-0.02, 0.0, 0.02):
        for ds in (0.98, 1.0, 1.02):
            assert nll(fit.mu * (1 + dm), fit.sigma * ds) >= nll(fit.mu, fit.sigma) - 1e-6
