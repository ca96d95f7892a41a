"""The statistical checks of `qodasim.quantize.check`: exact standard errors, error moments, identical samples."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim import Key, Levels, Quantizer
from qodasim.quantize.check import error_moments, float_resolution, mc_mean_check


def test_identical_samples_with_rounding_noise_std_are_checked_exactly():
    """300 identical errors of 0.7 have np.std = 1.1e-16 (the mean is not 0.7 exactly): a z-score over
    that 'standard error' read 58 on an AMD machine.  The deterministic case is now exact."""
    x = np.full(300, 0.7)
    assert x.std(ddof=1) > 0  # the trap
    exact = 0.7 + 2e-16
    z, note = mc_mean_check(x, exact, 0.0, float_resolution(16, 1.0))
    assert z == 0.0 and "exact" in note
    z, _ = mc_mean_check(x, exact, None, float_resolution(16, 1.0))  # variance unknown: same exact path
    assert z == 0.0
    # ... and it can fail: a deterministic case off by more than the float resolution, or varying draws
    assert mc_mean_check(x, 0.71, 0.0, 1e-12)[0] == np.inf
    assert mc_mean_check(np.r_[x[:-1], 0.8], 0.7, 0.0, 1e-12)[0] == np.inf
    # ρ = ½ on every coordinate: the draws differ, their errors agree up to rounding; exact zero variance
    q = Quantizer(Levels.uniform(7))
    v = np.full(4, 0.5)
    err = np.array([np.sum((q(v, Key(1, 0, t)) - v) ** 2) for t in range(200)])
    mean, var = error_moments(q, v)
    assert var == 0.0 and err.std() > 0
    assert mc_mean_check(err, mean, var, float_resolution(4, 1.0))[0] == 0.0


def test_exact_standard_error_is_floored_and_fails_when_biased():
    rng = np.random.default_rng(0)
    samples = rng.normal(1.0, 0.1, 400)
    z, _ = mc_mean_check(samples, 1.0, 0.01, 1e-12)
    assert z < 4
    assert mc_mean_check(samples, 1.05, 0.01, 1e-12)[0] > 6  # 10 standard errors off
    # a variance that is rounding noise cannot shrink the SE below the float resolution
    assert mc_mean_check(samples * 0 + 1.0 + np.arange(400) * 1e-18, 1.0, 1e-40, 1e-12)[0] < 1


@pytest.mark.parametrize("seed", range(5))
def test_error_moments_match_monte_carlo(seed):
    """Var‖Q(v) − v‖² = Σ ρ(1−ρ)(1−2ρ)² w⁴: checked against 20 000 draws (4 sample-SEs of the variance)."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(3, 40))
    q = Quantizer(Levels.from_interior(np.sort(rng.uniform(0, 1, 3))), q=[2.0, np.inf][seed % 2])
    v = rng.standard_normal(d)
    mean, var = error_moments(q, v)
    err = np.array([np.sum((q(v, Key(seed, 0, t)) - v) ** 2) for t in range(20000)])
    assert np.isclose(mean, q.exact_variance(v), rtol=1e-12)
    # SE of the sample variance ≈ sqrt((m4 - s^4)/n); 5 of those
    m4 = np.mean((err - err.mean()) ** 4)
    assert abs(err.var() - var) < 5 * np.sqrt(max(m4 - err.var() ** 2, 1e-300) / err.size) + 1e-12
