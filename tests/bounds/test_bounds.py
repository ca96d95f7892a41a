"""The bounds: closed forms, the tight variance bound and its adversarial vector, the layer-wise bounds and the LP
bracket (THEORY §3)."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim import Key, LayerLayout, LayerwiseQuantizer, Levels, Quantizer, bounds
from qodasim.bounds import (
    adversarial_vector,
    layerwise_tight_bound,
    layerwise_tight_bound_lp,
    natural_dithering_bound,
    qsgd_bound,
    simple_bound,
    tight_variance_bound,
    variance_arcs,
)
from qodasim.optimize import (
    normalized_magnitudes,
)
from qodasim.quantize.check import error_moments, float_resolution, mc_mean_check

DIMS = [1, 2, 3, 7, 16, 100, 1024, 65536]


@pytest.mark.parametrize("d", DIMS)
def test_tight_bound_s1_is_sqrt_d_minus_1(d):
    assert np.isclose(tight_variance_bound(Levels.uniform(1), d, transmitted=False).value, np.sqrt(d) - 1, rtol=1e-9,
                      atol=1e-12)  # fmt: skip
    # the transmitted-norm bound (THEORY §1) is above it by a relative 2^-21 at most (absolute at d = 1)
    t = tight_variance_bound(Levels.uniform(1), d).value
    assert np.sqrt(d) - 1 <= t <= (np.sqrt(d) - 1) * (1 + 2.0**-20) + 2.0**-20


@pytest.mark.parametrize("s", [1, 2, 3, 4, 8, 16, 64])
def test_tight_bound_never_above_closed_forms(s):
    lv = Levels.uniform(s)
    for tr in (False, True):  # true norm against the published forms; transmitted against transmitted
        for d in DIMS:
            t = tight_variance_bound(lv, d, transmitted=tr).value
            assert t <= qsgd_bound(s, d, transmitted=tr) * (1 + 1e-9)
            assert t <= simple_bound(lv, d, transmitted=tr) * (1 + 1e-9)
        nd = Levels.exponential(s - 1) if s > 1 else Levels.uniform(1)
        for d in DIMS:
            assert tight_variance_bound(nd, d, transmitted=tr).value <= natural_dithering_bound(
                s, d, transmitted=tr
            ) * (1 + 1e-9)


LEVEL_SETS = [Levels.uniform(2), Levels.uniform(7), Levels.exponential(5), Levels.exponential(3, 0.2),
              Levels.from_interior([0.05, 0.1, 0.6, 0.61])]  # fmt: skip


@pytest.mark.parametrize("levels", LEVEL_SETS, ids=lambda lv: lv.name)
def test_adversarial_vector_attains_tight_bound(levels):
    """Its exact variance is within one coordinate's worth (max φ = max gap²/4) of the bound, and
    ``attained`` is what the vector really reaches."""
    slack = float(np.max(np.diff(levels.values)) ** 2 / 4)
    arcs = variance_arcs(levels)
    for d in DIMS:
        b = tight_variance_bound(levels, d, transmitted=False)
        assert b.attained <= b.value * (1 + 1e-9) + 1e-12 and b.value - b.attained <= slack + 1e-9
        v = adversarial_vector(levels, d, b)
        assert np.isclose(np.linalg.norm(v), 1.0)
        assert np.isclose(np.sum(arcs(v * v)), b.attained, rtol=1e-9, atol=1e-12)
        exact = Quantizer(levels).exact_variance(v, normalized=True)
        assert exact <= b.value * (1 + 1e-6) + 1e-12
        assert b.value - exact <= slack + 1e-9


@pytest.mark.parametrize("levels", LEVEL_SETS, ids=lambda lv: lv.name)
def test_random_vectors_never_exceed_tight_bound(levels):
    rng = np.random.default_rng(0)
    quant = Quantizer(levels)
    for d in (4, 50, 700):
        bound = tight_variance_bound(levels, d).value
        for _ in range(30):
            v = rng.standard_normal(d) * np.exp(rng.uniform(-4, 2, d)) * (rng.random(d) < rng.random())
            if not v.any():
                continue
            assert quant.exact_variance(v, normalized=True) <= bound * (1 + 1e-6)
        # and a Monte Carlo estimate on the adversarial vector: mean of 2000 draws within 6 SE of exact
        v = adversarial_vector(levels, d)
        err = np.array([np.sum((quant(v, Key(1, 0, t)) - v) ** 2) for t in range(2000)])
        mean, var = error_moments(quant, v)  # exact SE; deterministic cases checked exactly
        assert mc_mean_check(err, mean, var, float_resolution(d, 1.0 + mean))[0] < 6


def test_layerwise_bounds():
    sizes, types = [16, 300, 5], [0, 1, 0]
    levels = (Levels.uniform(4), Levels.exponential(6))
    per_layer = layerwise_tight_bound(sizes, types, levels, "layer")
    assert np.isclose(per_layer, max(tight_variance_bound(levels[m], d).value for d, m in zip(sizes, types)))
    glob = layerwise_tight_bound(sizes, types, levels, "global")
    lo, hi = layerwise_tight_bound_lp(sizes, types, levels, n_knots=48)
    assert lo <= glob * (1 + 1e-6) and glob <= hi * (1 + 1e-6)
    assert (hi - lo) / glob < 0.05
    # M = 1: the global-norm layer-wise bound is the global tight bound for d = Σ d_l
    assert np.isclose(layerwise_tight_bound(sizes, [0, 0, 0], levels[0], "global"),
                      tight_variance_bound(levels[0], sum(sizes)).value, rtol=1e-7)  # fmt: skip
    # and random vectors quantized layer-wise never exceed their scope's bound
    layout = LayerLayout(sizes, types)
    rng = np.random.default_rng(2)
    for scope, bound in (("layer", per_layer), ("global", glob)):
        quant = LayerwiseQuantizer(layout, levels, scope=scope)
        for _ in range(20):
            v = rng.standard_normal(layout.d) * np.exp(rng.uniform(-3, 3, layout.d))
            assert quant.exact_variance(v, normalized=True) <= bound * (1 + 1e-6)


def test_layerwise_lp_bracket_is_scaled():
    """A layer of 10^6 coordinates: both solvers were optimal_inaccurate; the bracket widened with knots."""
    import warnings

    from qodasim import Levels
    from qodasim.bounds import layerwise_tight_bound, layerwise_tight_bound_lp

    args = ([10**6, 3], [0, 1], [Levels.exponential(3), Levels.uniform(4)])
    exact = layerwise_tight_bound(*args, "global")
    widths = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no optimal_inaccurate
        for k in (16, 32, 64):
            lo, hi = layerwise_tight_bound_lp(*args, n_knots=k)
            assert lo <= exact * (1 + 1e-7) and exact <= hi * (1 + 1e-7)
            widths.append(hi - lo)
    assert widths[-1] < widths[0] and widths[-1] / exact < 1e-6


def test_simple_and_closed_form_bounds_against_their_formulas():
    """κ = max (ℓ_{j+1} − ℓ_j)²/(4ℓ_jℓ_{j+1}) written out, on levels with ratios far from 2."""
    from qodasim import Levels, bounds

    rng = np.random.default_rng(6)
    for _ in range(30):
        lv = Levels.from_interior(np.sort(10 ** rng.uniform(-4, -0.01, int(rng.integers(1, 6)))))
        d = int(rng.integers(1, 10**6))
        v = lv.values
        kappa = max(((v[j + 1] - v[j]) ** 2 / (4 * v[j] * v[j + 1]) for j in range(1, v.size - 1)), default=0.0)
        want = kappa + min(v[1] * np.sqrt(d), d * v[1] ** 2 / 4)
        assert np.isclose(bounds.simple_bound(lv, d, transmitted=False), want, rtol=1e-12)
    assert bounds.qsgd_bound(2, 16, transmitted=False) == 2.0  # the √d/s branch
    assert bounds.qsgd_bound(s=8, d=16, transmitted=False) == 0.25  # the d/s² branch
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="s must"):
            bounds.natural_dithering_bound(bad, 4)
        with pytest.raises(ValueError, match="s must"):
            bounds.qsgd_bound(bad, 4)


def test_tight_bound_covers_the_transmitted_norm():
    """[3.7] with s = 1: the float32 norm is above 3.7, so r < 1 and the variance is 1.29e-8 > 0 = the
    true-norm tight bound.  The transmitted-norm bound covers it; so do the closed forms."""
    q = Quantizer(Levels.uniform(1))
    var = q.exact_variance(np.array([3.7]), normalized=True)
    assert var > 0
    assert bounds.tight_variance_bound(Levels.uniform(1), 1, transmitted=False).value == 0.0
    assert var <= bounds.tight_variance_bound(Levels.uniform(1), 1).value
    rng = np.random.default_rng(2)
    for _ in range(200):  # random small vectors and levels: exact variance never above any bound
        d = int(rng.integers(1, 6))
        lv = Levels.from_interior(np.sort(rng.uniform(0, 1, int(rng.integers(0, 4)))))
        v = rng.standard_normal(d) * 10.0 ** rng.uniform(-30, 30)
        var = Quantizer(lv).exact_variance(v, normalized=True)
        assert var <= bounds.tight_variance_bound(lv, d).value
        assert var <= bounds.simple_bound(lv, d)


def test_numerics_at_the_edges():
    assert normalized_magnitudes([1e308, 1e308]) == pytest.approx([2**-0.5, 2**-0.5])
    assert np.isfinite(bounds.simple_bound(Levels([0, 5e-324, 1e-300, 1]), 16))
    with pytest.raises(ValueError, match="dimension"):
        LayerLayout([2**62, 2**62])
    for lv in (Levels.uniform(1), Levels.uniform(3), Levels.exponential(4)):
        assert bounds.tight_variance_bound(lv, 1).value >= 0.0
        assert bounds.tight_variance_bound(lv, 1, transmitted=False).value >= 0.0


def test_attained_is_attainable_for_small_d():
    """Levels 0.383, 0.600, 0.611, 0.964 at d = 2: 'attained' was 0.0645, the true maximum 0.0492."""
    lv = Levels([0, 0.383, 0.600, 0.611, 0.964, 1])
    b = bounds.tight_variance_bound(lv, 2)
    arcs = bounds.variance_arcs(lv)
    w = np.linspace(0.0, 1.0, 400001)
    brute = float(np.max(arcs(w) + arcs(1.0 - w)))
    assert b.attained <= brute + 1e-12 and b.attained >= brute - 1e-6
    v = bounds.adversarial_vector(lv, 2)
    assert np.isclose(np.sum(arcs(v * v)), b.attained, rtol=1e-9)
    rng = np.random.default_rng(3)
    for _ in range(20):  # attained never above the bound, and never above brute force for d = 2, 3
        lv = Levels.from_interior(np.sort(rng.uniform(0, 1, int(rng.integers(1, 5)))))
        for d in (2, 3):
            b = bounds.tight_variance_bound(lv, d, transmitted=False)
            assert b.attained <= b.value + 1e-12
            pts = rng.dirichlet(np.ones(d), 20000)
            assert np.max(np.sum(bounds.variance_arcs(lv)(pts), axis=1)) <= b.value + 1e-12


def test_adversarial_vector_is_the_best_two_valued_one():
    """exponential(6, 0.3) at d = 1000 reached 0.40007; the best two-valued vector reaches 0.40842."""
    lv = Levels.exponential(6, 0.3)
    b = bounds.tight_variance_bound(lv, 1000)
    v = bounds.adversarial_vector(lv, 1000)
    got = float(np.sum(bounds.variance_arcs(lv)(v * v)))
    assert got > 0.4084 and got <= b.value
