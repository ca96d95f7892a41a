"""The equal-budget helpers (`qodasim.experiments.budget`): levels for a budget, bits per coordinate, reading at
equal bits, intervals, frontiers."""

from __future__ import annotations

import numpy as np
import pytest
from cases import two_type_sample

from qodasim import LayerLayout, LayerwiseQuantizer, Levels, Quantizer
from qodasim.coding import expected_bits
from qodasim.experiments import budget as bd
from qodasim.experiments.budget import bits_per_coordinate, levels_for_budget, variance_bits_curve
from qodasim.solvers import SolverConfig
from qodasim.vi import NoiseModel, layered_problem


@pytest.mark.parametrize("kind", ["uniform", "optimized"])
@pytest.mark.parametrize("layered", [False, True])
@pytest.mark.parametrize("budget", [1.6, 2.5, 4.0])
def test_levels_for_budget_is_the_largest_alpha_within_the_budget(kind, layered, budget):
    """Exact expected bits of the returned levels ≤ budget, and every larger ``α`` costs more."""
    layout, v = two_type_sample(1)
    lay = layout if layered else None
    lv = bd.levels_for_budget(v, lay, budget, kind, max_alpha=30)
    alpha = lv[0].alpha
    assert all(x.alpha == alpha for x in lv) and len(lv) == (2 if layered else 1)
    got = bd._quantizer(v, lay, alpha, kind, 2.0, "histogram", "layer")
    assert bd.bits_per_coordinate(v, got) <= budget
    assert (got.levels if layered else (got.levels,)) == lv
    for a in range(alpha + 1, 31):
        assert bd.bits_per_coordinate(v, bd._quantizer(v, lay, a, kind, 2.0, "histogram", "layer")) > budget


def test_bits_per_coordinate_counts_payload_and_norms_exactly():
    layout, v = two_type_sample(2)
    q = LayerwiseQuantizer(layout, (Levels.uniform(3), Levels.uniform(7)), scope="layer")
    e = expected_bits(v, q, "dense", "gamma")
    assert e["norms"] == 32 * layout.n_layers
    assert bd.bits_per_coordinate(v, q) == pytest.approx((e["payload"] + e["norms"]) / layout.d, rel=1e-15)


@pytest.mark.parametrize(
    "args",
    [
        dict(bits_per_coord=0.01),
        dict(bits_per_coord=float("nan")),
        dict(bits_per_coord=-1.0),
        dict(bits_per_coord=3.0, kind="nonuniform"),
        dict(bits_per_coord=3.0, v=np.zeros(10)),
        dict(bits_per_coord=3.0, v=np.full(10, np.inf)),
        dict(bits_per_coord=3.0, layout=LayerLayout([5, 6], [0, 1])),
    ],
)
def test_levels_for_budget_rejects_bad_input(args):
    v = args.pop("v", np.random.default_rng(0).standard_normal(10))
    layout = args.pop("layout", None)
    with pytest.raises(ValueError):
        bd.levels_for_budget(v, layout, **args)


def test_at_bits_interpolates_log_variance_and_never_extrapolates():
    curve = np.array([[4.0, 1e-3], [1.0, 1e-1], [2.0, 1e-2]])  # unsorted on purpose
    assert bd.at_bits(curve, 2.0) == pytest.approx(1e-2)
    assert bd.at_bits(curve, 1.5) == pytest.approx(np.sqrt(1e-1 * 1e-2))
    assert bd.at_bits(curve, 3.0) == pytest.approx(np.sqrt(1e-2 * 1e-3))
    assert np.isnan(bd.at_bits(curve, 0.99)) and np.isnan(bd.at_bits(curve, 4.01))


def test_mean_ci_brackets_the_mean_and_is_zero_width_for_identical_replicas():
    m, lo, hi = bd.mean_ci(np.full(7, 0.3))
    assert m == lo == hi == pytest.approx(0.3)
    x = np.random.default_rng(3).standard_normal(40) + 5.0
    m, lo, hi = bd.mean_ci(np.append(x, np.nan))
    assert lo < m < hi and m == pytest.approx(x.mean())
    assert hi - lo == pytest.approx(2 * 1.96 * x.std(ddof=1) / np.sqrt(x.size), rel=0.25)  # normal-theory width
    assert all(np.isnan(bd.mean_ci([np.nan, np.inf])))


def test_comparison_reads_each_replica_at_equal_bits_and_iterations():
    p = layered_problem([20, 6, 30], [1.0, 0.1, 1.0], types=[0, 1, 0], seed=2)
    base = dict(method="qoda", K=2, T=120, replicas=3, seed=4, noise=NoiseModel("absolute", 0.2), record=12)
    comp = bd.compare(
        p,
        {
            "g": SolverConfig(compression="global", levels="uniform:3", **base),
            "l": SolverConfig(compression="layerwise", levels=("uniform:3", "uniform:1"), **base),
        },
    )
    B, G = comp.cumulative("l")
    res = comp.results["l"]
    assert np.array_equal(B, res.cumulative_bits() / (p.d * 2)) and np.array_equal(G, res.measures["gap_avg"])
    assert np.allclose(comp.bits_per_coord("l") * 120, B[:, -1])  # the whole run's bits over T iterations
    common = comp.common_bits()
    assert common == min(comp.cumulative(n)[0][:, -1].min() for n in ("g", "l"))
    r = 1
    want = np.exp(np.interp(np.log(common), np.log(B[r]), np.log(G[r])))
    assert comp.gap_at_bits("l", common)[r] == pytest.approx(want, rel=1e-12)
    assert np.all(np.isnan(comp.gap_at_bits("l", 10 * B.max())))
    assert np.array_equal(comp.gap_at_iteration("l"), G[:, -1])
    assert np.array_equal(comp.gap_at_iteration("l", int(res.iterations[3])), G[:, 3])
    with pytest.raises(ValueError):
        bd.compare(p, {})
    with pytest.raises(TypeError):
        bd.compare(p, {"x": {"method": "qoda"}})


def test_dqsgd_frontier_interpolates_in_log_log_and_refuses_to_extrapolate():
    from qodasim.experiments.dqsgd import frontier_bits

    bits, err = [10.0, 20.0, 40.0, 80.0], [1.0, 0.5, 0.6, 0.1]  # 40 is dominated by 20
    assert frontier_bits(bits, err, 0.5) == pytest.approx(20.0)
    want = np.exp(np.interp(-np.log(0.2), -np.log([0.5, 0.1]), np.log([20.0, 80.0])))
    assert frontier_bits(bits, err, 0.2) == pytest.approx(want)
    assert np.isnan(frontier_bits(bits, err, 0.05)) and np.isnan(frontier_bits(bits, err, 2.0))


def test_k_exponents_recover_a_planted_power_with_an_interval():
    from qodasim.experiments.convergence import k_exponents

    rng = np.random.default_rng(0)
    Ks, it = [1, 2, 4, 8], np.array([10, 100, 1000])
    gaps = {k: np.outer(np.exp(0.05 * rng.standard_normal(30)), k**-0.5 * it**-0.5) for k in Ks}
    rows = k_exponents(Ks, gaps, it, n_boot=200, t_min=50)
    assert [r["T"] for r in rows] == [100, 1000]
    for r in rows:
        assert r["ci"][0] < r["exponent"] < r["ci"][1] and abs(r["exponent"] + 0.5) < 0.05
    with pytest.raises(ValueError):
        k_exponents(Ks, {**gaps, 4: -gaps[4]}, it)


@pytest.mark.parametrize(
    "lv", [Levels.uniform(1), Levels.uniform(24), Levels.exponential(6, 0.3), Levels(np.array([0.0, 0.1, 0.7, 1.0]))]
)
def test_levels_spec_reads_back_to_equal_levels(lv):
    back = Levels.parse(lv.to_spec())
    assert np.array_equal(back.values, lv.values)
    assert lv.to_spec().startswith("uniform:") == bool(lv.uniform_s)


def test_budget_curves_against_quantizers_built_by_hand():
    """Survivors of ``tools/mutation.py solvers/budget``: each type's levels are fitted to that type's
    layers only (per-layer normalized, or normalized by the whole vector's norm with ``scope="global"``),
    ``kind="uniform"`` gives QSGD levels, and the curve's numbers are the hand-built quantizer's exact
    bits and variance."""
    from qodasim.optimize import normalized_magnitudes, optimize_levels
    from qodasim.quantize import vector_norm

    layout, v = two_type_sample(7)
    alpha = 3
    for scope in ("layer", "global"):
        total = float(vector_norm(v, 2.0))
        lvs = []
        for m in (0, 1):
            parts = [v[layout.layer_slice(l)] for l in range(layout.n_layers) if int(layout.types[l]) == m]
            rs = [np.minimum(np.abs(x) / total, 1.0) if scope == "global" else normalized_magnitudes(x) for x in parts]
            lvs.append(optimize_levels(np.concatenate(rs), alpha, "histogram").levels)
        q = LayerwiseQuantizer(layout, tuple(lvs), scope=scope)
        curve = bd.variance_bits_curve(v, layout, [alpha], "optimized", scope=scope)
        assert curve[0, 0] == pytest.approx(bd.bits_per_coordinate(v, q), rel=1e-12)
        assert curve[0, 1] == pytest.approx(q.exact_variance(v, normalized=True), rel=1e-9)
    assert lvs[0] != lvs[1]  # the two types' fits differ (a fit on the wrong type's layers would show)
    uni = bd.levels_for_budget(v, layout, 3.0, "uniform")
    assert all(lv.uniform_s == lv.alpha + 1 for lv in uni)
    opt = bd.levels_for_budget(v, layout, 3.0, "optimized")
    assert not any(lv.uniform_s for lv in opt)


def test_gaps_at_bits_skips_empty_records_and_needs_two_points():
    B = np.array([[0.0, 10.0, 100.0], [0.0, 0.0, 50.0], [5.0, 10.0, 20.0]])
    G = np.array([[9.0, 4.0, 1.0], [3.0, 2.0, 1.0], [0.0, 2.0, 1.0]])
    got = bd.gaps_at_bits(B, G, np.sqrt(10.0 * 100.0))
    assert got[0] == pytest.approx(2.0)  # log-log midpoint of (10, 4) and (100, 1), the b = 0 record skipped
    assert np.isnan(got[1])  # one positive record: nothing to interpolate
    assert np.isnan(got[2])  # 31.6 is past the last record
    assert bd.gaps_at_bits(B, G, 10.0)[2] == pytest.approx(2.0)  # the g = 0 record skipped, 10 is the first kept


def test_budget_helpers_take_a_bucket_size():
    v = np.concatenate([np.random.default_rng(1).standard_normal(3000) * s for s in (0.01, 1.0, 30.0)])
    curve = variance_bits_curve(v, None, [1, 3, 7], kind="uniform", bucket_size=512)
    for (bits, var), a in zip(curve, [1, 3, 7]):
        Q = Quantizer(Levels.uniform(a + 1), bucket_size=512)
        assert var == Q.exact_variance(v, normalized=True) and bits == bits_per_coordinate(v, Q)
    (lv,) = levels_for_budget(v, None, 2.5, kind="uniform", bucket_size=512)
    fit = bits_per_coordinate(v, Quantizer(lv, bucket_size=512))
    over = bits_per_coordinate(v, Quantizer(Levels.uniform(lv.s + 1), bucket_size=512))
    assert fit <= 2.5 < over
    # bucketed beats one norm on a vector with scales over 3 decades (the practice the issue names)
    one = variance_bits_curve(v, None, [lv.alpha], kind="uniform")[0, 1]
    assert curve[2, 1] < one
    lay = LayerLayout([3000, 3000, 3000], [0, 1, 1])
    opt = variance_bits_curve(v, lay, [3], kind="optimized", bucket_size=256)
    assert opt.shape == (1, 2) and np.isfinite(opt).all()
    with pytest.raises(ValueError, match="bucket_size"):
        variance_bits_curve(v, lay, [3], scope="global", bucket_size=256)
    with pytest.raises(ValueError, match="bucket_size"):
        variance_bits_curve(v, None, [3], bucket_size=0)


def test_solver_and_compare_take_a_bucket_size():
    """A bucketed run sends one float32 norm per bucket (of the vector, or of each layer), read from
    the streams; ``compare(..., bucket_size=B)`` applies it to every config."""
    from dataclasses import replace

    from qodasim.experiments.budget import compare
    from qodasim.solvers import SolverConfig, SolverError, solve
    from qodasim.vi import NoiseModel, bilinear_game

    prob = bilinear_game(150, seed=0)  # d = 300, two layers of 150
    base = SolverConfig(method="qoda", K=2, T=20, compression="global", levels="uniform:3",
                        noise=NoiseModel("absolute", 0.1))  # fmt: skip
    for comp, per_message in (("global", -(-300 // 64)), ("layerwise", 2 * -(-150 // 64))):
        res = solve(prob, replace(base, compression=comp, bucket_size=64))
        assert res.ledger.totals()["norms"] == 32 * per_message * res.ledger.messages()
    c = compare(prob, {"g": base}, bucket_size=64)
    assert c.results["g"].config["bucket_size"] == 64
    assert c.bits_per_coord("g")[0] > compare(prob, {"g": base}).bits_per_coord("g")[0]
    for bad, msg in (({"bucket_size": 0}, "bucket_size"),
                     ({"bucket_size": 8, "compression": "layerwise", "scope": "global"}, "scope"),
                     ({"bucket_size": 8, "compression": "layerwise", "policy": {"policy": "lgreco", "every": 5}},
                      "policy")):  # fmt: skip
        with pytest.raises(SolverError, match=msg):
            SolverConfig(**bad)
