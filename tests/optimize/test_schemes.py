"""The scheme comparison engine (`qodasim.optimize.schemes`): exact statistics, budget points, L-GreCo's allocation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cases import grads

from qodasim import LayerLayout, LayerwiseQuantizer, Levels, Quantizer
from qodasim.coding import entropy_floor, expected_bits
from qodasim.optimize import schemes as S


def test_stats_are_the_exact_statistics_of_each_scheme():
    g = grads()
    lay = LayerLayout.from_arrays(g, types="role")
    v = lay.flatten(g, np.float64)
    for scheme in S.scheme_names(lay):
        curve = S.scheme_curve(v, lay, scheme, 3.0, max_alpha=12)
        p = S.at_budget(curve, v, lay, 3.0, "gamma")
        Q = p.quantizer
        assert p.variance == pytest.approx(Q.exact_variance(v, normalized=True), rel=1e-12)
        e = expected_bits(v, Q)
        assert (
            p.bits["gamma"] == pytest.approx((e["payload"] + e["norms"]) / v.size, rel=1e-12) and p.bits["gamma"] <= 3
        )
        cvar = Q.coordinate_variance(v)
        for l in range(lay.n_layers):
            sl = lay.layer_slice(l)
            assert p.layer_rel[l] == pytest.approx(cvar[sl].sum() / np.dot(v[sl], v[sl]), rel=1e-9)
        if scheme != "lgreco":
            bits, _, _ = S.stats(v, Q, lay)
            n_norms = Q.plan(v.size).n_groups
            assert bits["entropy"] == pytest.approx((entropy_floor(v, Q) + 32 * n_norms) / v.size, rel=1e-12)
            widths = {2: 2, 3: 3, 4: 3, 5: 4, 8: 4, 9: 5, 16: 5, 17: 6}
            fixed = sum(widths.get(lv.size, int(np.ceil(np.log2(2 * lv.size - 1)))) * int(np.sum(Q.plan(v.size)
                        .coord_type() == m)) for m, lv in enumerate(Q.type_levels))  # fmt: skip
            assert bits["fixed"] == pytest.approx((fixed + 32 * n_norms) / v.size, rel=1e-12)


def test_budget_point_is_the_least_variance_that_fits():
    g = grads()
    lay = LayerLayout.from_arrays(g, types="role")
    v = lay.flatten(g, np.float64)
    for scheme in ("qsgd", "qsgd-b128", "layer-opt"):
        curve = S.scheme_curve(v, lay, scheme, 4.0)
        for code in S.CODES:
            p = S.at_budget(curve, v, lay, 2.5, code)
            fits = [q for q in curve.points if q.bits[code] <= 2.5]
            if not fits:
                assert p is None
                continue
            assert p.variance == min(q.variance for q in fits)


def test_budget_point_compares_every_fitting_alpha():
    """Fitted levels are not monotone in α: a larger α that fits can have the larger variance."""
    nan = np.array([np.nan])
    pts = (S.Point(0, {"gamma": 1.0}, 0.5, nan, None), S.Point(1, {"gamma": 1.5}, 0.8, nan, None),
           S.Point(2, {"gamma": 3.0}, 0.1, nan, None))  # fmt: skip
    curve = S.SchemeCurve("layer-opt", pts)
    assert S.at_budget(curve, None, None, 2.0, "gamma").alpha == 0
    assert S.at_budget(curve, None, None, 3.0, "gamma").alpha == 2
    assert S.at_budget(curve, None, None, 0.5, "gamma") is None


def test_fixed_width_is_the_signed_index_width():
    from qodasim.coding import fixed_width_bits

    for n_levels, width in ((2, 2), (3, 3), (4, 3), (5, 4), (8, 4), (9, 5), (33, 7)):
        Q = Quantizer(Levels.uniform(n_levels - 1))
        assert fixed_width_bits(Q.plan(10), Q.type_levels) == 10 * width  # ⌈log2(2n − 1)⌉ per coordinate


def test_lgreco_allocation_is_optimal_at_its_discretization():
    rng = np.random.default_rng(3)
    parts = [rng.standard_normal(300) * s for s in (0.05, 1.0, 4.0)]
    v = np.concatenate(parts)
    lay = LayerLayout([300, 300, 300])
    curve = S.scheme_curve(v, lay, "lgreco", 3.5, max_alpha=8)
    for budget in (2.0, 2.6, 3.2):
        p = S.at_budget(curve, v, lay, budget, "gamma")
        bits, errs = curve.options["bits"]["gamma"], curve.options["errors"]
        # the DP rounds each layer's bits up to units of budget·d/4000, so it is exact against every
        # choice that fits the budget less L units (Σ⌈x_l⌉ ≤ Σ x_l + L)
        tight = budget * v.size * (1 - lay.n_layers / 4000)
        best = min(sum(e[i] for e, i in zip(errs, c)) for c in itertools.product(*(range(b.size) for b in bits))
                   if sum(b[i] for b, i in zip(bits, c)) <= tight)  # fmt: skip
        assert p.bits["gamma"] <= budget
        assert p.variance * np.dot(v, v) <= best * (1 + 1e-12)
        assert p.variance == pytest.approx(p.quantizer.exact_variance(v, normalized=True), rel=1e-9)


def test_scheme_grid_scan_and_fitted_levels_follow_their_definitions():
    from qodasim.optimize import optimize_levels

    assert {s for s in S.SCHEMES if s.startswith("qsgd-b")} == {"qsgd-b128", "qsgd-b512", "qsgd-b1024", "qsgd-b4096"}
    g = S.alpha_grid(True)
    assert g[:32] == list(range(32)) and g[-1] == 2**16
    assert all(1 < b / a <= 1.19 + 1 / a for a, b in zip(g[31:], g[32:]))  # steps of about 19%
    assert S.alpha_grid(False) == list(range(63)) and S.alpha_grid(True, 40)[-1] == 40
    assert "layer-opt" in S.scheme_names(LayerLayout([3, 4])) and "layer-opt" not in S.scheme_names(LayerLayout([7]))
    v, lay = _grads_vector()
    for scheme in ("qsgd", "layer-opt"):
        pts = S.scheme_curve(v, lay, scheme, 2.5).points
        over = [min(p.bits.values()) > 2.5 for p in pts]
        assert over[-2:] == [True, True]  # the scan stops at the first two costly α in a row
        assert not any(a and b for a, b in zip(over[:-2], over[1:-1]))
    # layer-opt: each type's levels are fitted to |v_i| / (its layer's transmitted float32 norm)
    p = S.scheme_curve(v, lay, "layer-opt", 3.0, max_alpha=4).points[3]
    norms = LayerwiseQuantizer(lay, Levels.uniform(1)).norms(v).astype(np.float64)
    for m in range(lay.n_types):
        rs = np.concatenate([np.minimum(np.abs(v[lay.layer_slice(l)]) / norms[l], 1.0)
                             for l in range(lay.n_layers) if lay.types[l] == m])  # fmt: skip
        assert p.quantizer.levels[m] == optimize_levels(rs, 3, "histogram").levels


def test_lgreco_bits_are_its_quantizer_s_bits_in_every_code():
    v, lay = _grads_vector()
    v[lay.layer_slice(1)] = 0.0  # an all-zero layer: its norm and zero indices
    curve = S.scheme_curve(v, lay, "lgreco", 4.0)
    for code in S.CODES:
        p = S.at_budget(curve, v, lay, 3.5, code)
        bits, var, rel = S.stats(v, p.quantizer, p.quantizer.layout)
        assert p.bits[code] == pytest.approx(bits[code], rel=1e-12) and p.variance == pytest.approx(var, rel=1e-12)
        assert rel[1] != rel[1]  # nan: a zero layer has no relative error


def _grads_vector():
    g = grads(2)
    lay = LayerLayout.from_arrays(g, types="role")
    return lay.flatten(g, np.float64), lay


@pytest.mark.parametrize("bucket", [32, 64])
def test_lgreco_with_buckets_is_per_layer_widths_over_bucketed_norms(bucket):
    """``lgreco-b<B>``: the chosen quantizer has one norm per bucket inside each layer and exactly the
    bits and variance the DP's table promised in every code, an all-zero layer included."""
    v, lay = _grads_vector()
    v[lay.layer_slice(0)] = 0.0  # 288 coordinates: several buckets of zeros
    curve = S.scheme_curve(v, lay, "lgreco-b512", 4.0)
    assert curve.options["bucket"] == 512
    curve = S._lgreco_options(v, lay, 4.0, S.CODES, 2.0, None, None, bucket, f"lgreco-b{bucket}")
    for code in S.CODES:
        p = S.at_budget(curve, v, lay, 3.5, code)
        assert p.quantizer.plan(v.size).n_groups == sum(-(-int(n) // bucket) for n in lay.sizes)
        bits, var, rel = S.stats(v, p.quantizer, p.quantizer.layout)
        assert p.bits[code] == pytest.approx(bits[code], rel=1e-12) and p.variance == pytest.approx(var, rel=1e-12)
        assert p.bits[code] <= 3.5


def test_alpha_per_type_is_the_dp_optimum_and_never_worse_than_one_alpha():
    """``layer-opt-alloc``: the α per type of least squared error within the budget (exhaustive search
    over the types' options at the DP's discretization), its bits the whole quantizer's exact bits (the
    codes add over types), and never worse than ``layer-opt``'s common α."""
    rng = np.random.default_rng(5)
    lay = LayerLayout([400, 50, 300, 30, 200], [0, 1, 0, 1, 2])
    v = rng.standard_normal(lay.d) * np.repeat([1.0, 0.02, 3.0, 0.05, 0.4], lay.sizes)
    v[lay.layer_slice(4)] = rng.standard_t(2, 200) * 0.4
    alloc = S.scheme_curve(v, lay, "layer-opt-alloc", 4.0, max_alpha=10)
    common = S.scheme_curve(v, lay, "layer-opt", 4.0, max_alpha=10)
    for code in S.CODES:
        for budget in (2.0, 3.0, 4.0):
            p = S.at_budget(alloc, v, lay, budget, code)
            if p is None:
                assert S.at_budget(common, v, lay, budget, code) is None
                continue
            bits, errs = alloc.options["bits"][code], alloc.options["errors"]
            tight = budget * lay.d * (1 - lay.n_types / 4000)
            best = min(sum(e[i] for e, i in zip(errs, c)) for c in itertools.product(*(range(b.size) for b in bits))
                       if sum(b[i] for b, i in zip(bits, c)) <= tight)  # fmt: skip
            assert p.bits[code] <= budget and p.variance * np.dot(v, v) <= best * (1 + 1e-9)
            chosen = sum(float(b[alloc.options["alphas"][m].index(a)]) for m, (b, a) in enumerate(zip(bits, p.alpha)))
            assert chosen / lay.d == pytest.approx(p.bits[code], rel=1e-9)
            one = S.at_budget(common, v, lay, budget * (1 - lay.n_types / 4000), code)
            if one is not None:
                assert p.variance <= one.variance * (1 + 1e-9)
    assert len(set(S.at_budget(alloc, v, lay, 3.0, "gamma").alpha)) > 1  # the types do get different α here


def test_frontier_is_the_lower_convex_hull_read_at_the_budget():
    nan = np.array([np.nan])

    def pt(b, e):
        return S.Point(0, {"gamma": b}, e, nan, None)

    a, b, c, far = pt(1.0, 0.5), pt(2.0, 0.4), pt(3.0, 0.1), pt(5.0, 0.0)
    val, (lo, lam, hi) = S.frontier_at([a, b, c, far], 2.0, "gamma")
    assert (lo, hi) == (a, c) and lam == 0.5 and val == pytest.approx(0.3)  # the chord a–c lies below b
    assert S.frontier_at([a, b, c], 3.0, "gamma")[0] == 0.1  # c alone
    assert S.frontier_at([a, b, c], 0.5, "gamma") is None
    assert S.frontier_at([b], 2.5, "gamma")[1] == (b, 1.0, b)
    # against a dense scan of every mixture of two points
    rng = np.random.default_rng(0)
    for _ in range(20):
        pts = [pt(float(x), float(y)) for x, y in zip(rng.uniform(0.5, 4, 6), rng.uniform(0, 1, 6))]
        budget = float(rng.uniform(1.0, 3.5))
        got = S.frontier_at(pts, budget, "gamma")
        lams = np.linspace(0, 1, 20001)
        dense = min(
            float(np.min(np.where(lams * p.bits["gamma"] + (1 - lams) * q.bits["gamma"] <= budget,
                                  lams * p.variance + (1 - lams) * q.variance, np.inf)))
            for p in pts for q in pts
        )  # fmt: skip
        if not np.isfinite(dense):
            assert got is None
        else:
            assert got[0] <= dense + 1e-12 and got[0] >= dense - 1e-3
    with pytest.raises(ValueError, match="metric"):
        S.frontier_at([a], 2.0, "gamma", metric="bits")
