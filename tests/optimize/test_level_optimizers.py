"""Level optimizers: exact, histogram, ALQ, AMQ, bound-optimal levels, level filling, optimize_layerwise."""

from __future__ import annotations

import time

import numpy as np
import pytest

from qodasim import LayerLayout, LayerwiseQuantizer, Levels
from qodasim.bounds import (
    simple_bound,
)
from qodasim.experiments import get
from qodasim.optimize import (
    Empirical,
    TruncatedNormal,
    alq_levels,
    amq_levels,
    bound_optimal_levels,
    exact_levels,
    histogram_levels,
    normalized_magnitudes,
    optimize_layerwise,
    optimize_levels,
    psi,
)
from qodasim.optimize.convex import geometric_optimum


def test_exact_never_beaten_by_alq_amq_histogram_or_random():
    rng = np.random.default_rng(4)
    r = normalized_magnitudes(rng.standard_normal(5000) * np.exp(rng.uniform(-2, 2, 5000)))
    emp = Empirical(r)
    for alpha in (1, 3, 6):
        ex = exact_levels(r, alpha)
        for other in (alq_levels(r, alpha), amq_levels(r, alpha), histogram_levels(r, alpha, 512)):
            assert ex.psi <= other.psi * (1 + 1e-9)
            assert np.isclose(psi(other.levels, emp), other.psi, rtol=1e-9)
        for _ in range(50):
            lv = Levels.from_interior(np.sort(rng.choice(np.unique(r)[1:-1], alpha, replace=False)))
            assert ex.psi <= psi(lv, emp) * (1 + 1e-12)


@pytest.mark.parametrize("m", [16, 128, 1024])
def test_histogram_within_its_error_bound(m):
    rng = np.random.default_rng(5)
    r = normalized_magnitudes(rng.standard_normal(20000) ** 3, q=np.inf)
    for alpha in (2, 7):
        ex, hi = exact_levels(r, alpha), histogram_levels(r, alpha, m)
        assert np.isclose(psi(hi.levels, Empirical(r)), hi.psi, rtol=1e-9)  # the DP's cost is exact
        gap = hi.psi - ex.psi
        assert -1e-15 <= gap <= hi.info["error_bound"]


def test_alq_closed_form_update_on_a_distribution():
    dist = TruncatedNormal(0.15, 0.2)
    res = alq_levels(dist, 4)
    # coordinate-wise optimality: perturbing any level increases Ψ
    base = psi(res.levels, dist)
    for j in range(1, res.levels.size - 1):
        for eps in (-1e-4, 1e-4):
            vals = res.levels.values.copy()
            vals[j] += eps
            assert psi(Levels(vals), dist) >= base - 1e-12
    amq = amq_levels(dist, 4)
    assert res.psi <= amq.psi * (1 + 1e-6)


def test_degenerate_inputs():
    assert exact_levels(np.zeros(100), 3).psi == 0.0
    one = exact_levels(np.full(50, 0.3), 3)
    assert abs(one.psi) < 1e-15 and 0.3 in one.levels.values
    few = exact_levels(np.array([0.1, 0.2, 0.9]), 6)
    assert abs(few.psi) < 1e-15 and few.levels.alpha == 6  # Ψ = 0 up to cancellation in the moment formula
    for method in ("exact", "histogram", "alq", "amq"):
        with pytest.raises(ValueError, match="NaN"):
            optimize_levels(np.array([0.1, np.nan]), 2, method)
        with pytest.raises(ValueError, match="normalized"):
            optimize_levels(np.array([0.1, 1.5]), 2, method)
        with pytest.raises(ValueError, match="alpha"):
            optimize_levels(np.array([0.1, 0.5]), -1, method)
    with pytest.raises(ValueError, match="method"):
        optimize_levels(np.array([0.1]), 1, "magic")
    with pytest.raises(TypeError, match="needs data"):
        exact_levels(TruncatedNormal(0.2, 0.1), 2)
    with pytest.raises(ValueError, match="zero vector"):
        normalized_magnitudes(np.zeros(5))


def test_layerwise_mqv_never_worse_than_global():
    rng = np.random.default_rng(6)
    for _ in range(5):
        scales = np.exp(rng.uniform(-3, 3, 4))
        layers = [rng.standard_normal(rng.integers(50, 400)) ** rng.integers(1, 4) * s for s in scales]
        types = [0, 1, 0, 2]
        res = optimize_layerwise(layers, types, 3)
        assert res.mqv <= res.global_mqv * (1 + 1e-12)
        assert np.isclose(res.type_weights.sum(), 1.0)
    # heterogeneous layers: the gain is large
    layers = [rng.standard_normal(2000), rng.standard_normal(2000) ** 5]
    res = optimize_layerwise(layers, [0, 1], 2)
    assert res.gain > 1.5


@pytest.mark.parametrize("alpha, d", [(1, 16), (3, 256), (7, 4096), (1, 10**5), (31, 10**8), (127, 10**9)])
def test_bound_optimal_levels_satisfy_optimality(alpha, d):
    """cvxpy (checked) = the closed form, for α up to 127 and d up to 1e9; both branches of the min.
    At (31, 1e8) an SCS 'optimal_inaccurate' point with value 16.3 (optimum 0.037) used to be accepted;
    at α = 1, d = 1e5 only the d ℓ1²/4 branch was minimized (21.43 instead of 17.29)."""
    closed = bound_optimal_levels(alpha, d)
    values = {b: geometric_optimum(alpha, d, b)[1] for b in ("d l1^2/4", "l1 sqrt(d)")}
    assert np.isclose(closed.value, min(values.values()), rtol=1e-12)
    res = bound_optimal_levels(alpha, d, method="cvxpy")
    assert np.isclose(res.value, closed.value, rtol=1e-6) and res.branch == closed.branch
    delta = geometric_optimum(alpha, d, closed.branch)[0]
    u = np.log(closed.levels.values[1:])
    assert np.allclose(np.diff(u), delta, rtol=1e-9)  # geometric, with the KKT gap Δ
    # and it really is the simple bound of its levels (true norm), which no perturbation improves
    assert np.isclose(simple_bound(closed.levels, d, transmitted=False), closed.value, rtol=1e-9)
    rng = np.random.default_rng(alpha)
    for _ in range(20):
        lv = Levels.from_interior(np.sort(np.exp(u[:-1] + rng.normal(0, 1e-3, alpha))))
        assert simple_bound(lv, d, transmitted=False) >= closed.value * (1 - 1e-12)
    if alpha == 1 and d == 10**5:
        assert closed.branch == "l1 sqrt(d)" and closed.value < 17.3


def test_bound_optimal_levels_refuses_a_non_optimal_answer(monkeypatch):
    from qodasim.optimize import SolverError, convex

    monkeypatch.setattr(convex, "_bound_program", lambda a, d, b, s: (np.linspace(-3.0, -0.1, a), "optimal_inaccurate"))
    with pytest.raises(SolverError, match="not optimal"):
        bound_optimal_levels(4, 1000, method="cvxpy")


@pytest.mark.parametrize(
    "src",
    [
        [0.0, 0.5, 1.0, 0.5],
        [0.3, 0.3],
        [-0.0, 0.2, 1.0],
        [0.0, -0.0, 0.7],
        [1.0],
        [0.0],
        "ties",
        "random",
    ],
)
def test_exact_level_candidates_equal_the_unique_based_construction(src):
    """The one-sort candidate construction (distinct values, counts, end points 0 and 1 added where
    missing) gives bit for bit what ``np.unique`` + ``bincount`` + ``searchsorted`` gave: values, signs
    of zero, weights and prefix sums — so exact levels are unchanged."""
    from qodasim.optimize import levels as lv_mod
    from qodasim.optimize.distributions import Empirical

    rng = np.random.default_rng(3)
    if isinstance(src, str):
        src = {"ties": rng.integers(0, 5, 1000) / 4, "random": rng.random(10**5) ** 2}[src]
    s = np.asarray(src, np.float64)
    emp, pts, wts = lv_mod._empirical_candidates(s)
    x, inv = np.unique(s, return_inverse=True)
    wx = np.bincount(inv, weights=np.ones_like(s), minlength=x.size)
    W = np.concatenate([[0.0], np.cumsum(wx / wx.sum())])
    assert np.array_equal(emp.x, x) and np.array_equal(emp.W, W)
    ref = np.unique(np.concatenate([[0.0], x, [1.0]]))
    ref_w = np.zeros(ref.size)
    ref_w[np.searchsorted(ref, x)] = np.diff(W)
    assert np.array_equal(pts, ref) and np.array_equal(np.signbit(pts), np.signbit(ref))
    assert np.array_equal(wts, ref_w)
    weighted = Empirical(s, np.ones_like(s))  # the weighted path keeps np.unique: same law
    assert np.array_equal(weighted.x, emp.x) and np.array_equal(weighted.W, emp.W)


def test_optimize_layerwise_global_scope_with_draws_reports_what_the_quantizer_does():
    """4 draws of a two-layer vector, global scope: the reported 0.0389 was 0.333 in fact (the draws
    were normalized as one long vector)."""
    from qodasim.optimize import optimize_layerwise

    rng = np.random.default_rng(0)
    layers, types, draws = [], [], []
    for k in range(4):
        layers += [rng.standard_normal(20) * (k + 1), rng.standard_normal(30) * 0.05]
        types += [0, 1]
        draws += [k, k]
    vs = [np.concatenate(layers[2 * k : 2 * k + 2]) for k in range(4)]
    for objective in ("per_coordinate", "relative"):
        res = optimize_layerwise(layers, types, 2, scope="global", draws=draws, objective=objective)
        lq = LayerwiseQuantizer(LayerLayout([20, 30], [0, 1]), res.levels, scope="global")
        if objective == "relative":
            actual = np.mean([lq.exact_variance(v, normalized=True) for v in vs])
        else:
            actual = np.mean([(lq.coordinate_variance(v) / lq.norms(v)[0] ** 2).mean() for v in vs])
        assert np.isclose(res.mqv, actual, rtol=1e-6), objective
        assert res.mqv <= res.global_mqv * (1 + 1e-12)


def test_optimize_layerwise_buckets_and_per_type_norms():
    from qodasim.optimize import optimize_layerwise

    rng = np.random.default_rng(1)
    layers = [rng.standard_normal(64), rng.standard_t(2, 50), rng.standard_normal(40) * 3]
    types = [0, 1, 0]
    res = optimize_layerwise(layers, types, 3, q=(2.0, np.inf), bucket_size=(16, None), objective="relative")
    lq = LayerwiseQuantizer(LayerLayout([64, 50, 40], types), res.levels, q=(2.0, np.inf), bucket_size=(16, None))
    v = np.concatenate(layers)
    assert np.isclose(res.mqv, lq.exact_variance(v, normalized=True), rtol=1e-6)
    with pytest.raises(ValueError, match="global"):
        optimize_layerwise(layers, types, 3, scope="global", bucket_size=8)
    with pytest.raises(ValueError, match="histogram"):
        optimize_layerwise(layers, types, 3, method="histogram", objective="relative")


def test_mqv_global_baseline_is_optimized_not_uniform():
    """A global baseline left at uniform levels would inflate the layer-wise gain unnoticed."""
    from qodasim.experiments import load_config

    _, cfg = load_config("mqv", "quick")
    res = get("mqv").run(dict(cfg, alphas=[2, 6]), progress=False)
    for row in res.data["rows"]:
        assert row["global"] < row["uniform"] * 0.99


def test_histogram_accepts_m_equal_alpha_plus_one():
    from qodasim.optimize import histogram_levels

    r = np.random.default_rng(2).random(500)
    res = histogram_levels(r, 3, m=4)
    assert np.allclose(res.levels.values, [0, 0.25, 0.5, 0.75, 1])
    with pytest.raises(ValueError, match="interior points"):
        histogram_levels(r, 3, m=3)


def test_convex_failure_message_names_every_solver(monkeypatch):
    import cvxpy as cp

    from qodasim.optimize import SolverError
    from qodasim.optimize.solvers import solve as solve_convex

    x = cp.Variable()
    prob = cp.Problem(cp.Minimize(x), [x >= 1])

    def fail(self, solver=None, **kw):
        raise cp.error.SolverError(f"{solver} broke")

    monkeypatch.setattr(cp.Problem, "solve", fail)
    with pytest.raises(SolverError) as exc:
        solve_convex(prob)
    assert "CLARABEL" in str(exc.value) and "SCS" in str(exc.value)


def _fill_reference(points, alpha):
    """The quadratic filling: split the widest gap (the first of equal ones) at its midpoint, re-sort."""
    inner = list(np.unique(points[(points > 0) & (points < 1)]))
    while len(inner) < alpha:
        grid = np.concatenate([[0.0], inner, [1.0]])
        k = int(np.argmax(np.diff(grid)))
        inner.append(0.5 * (grid[k] + grid[k + 1]))
        inner.sort()
    return Levels.from_interior(inner)


def test_level_filling_is_the_widest_gap_rule_and_fast_for_large_alpha():
    """Fewer distinct samples than levels: the filled levels equal the widest-gap-midpoint rule (ties to
    the left) on random and tie-heavy points; α = 10^5 takes well under a second (was > 60 s);
    α at the level table's limit is refused."""
    from qodasim.optimize import exact_levels
    from qodasim.optimize.levels import _fill_levels

    rng = np.random.default_rng(3)
    for case in range(40):
        pts = rng.random(rng.integers(0, 12)) if case % 2 else rng.integers(0, 5, 6) / 4  # ties: equal gaps
        alpha = int(rng.integers(pts.size, 60))
        assert np.array_equal(_fill_levels(pts, alpha).values, _fill_reference(pts, alpha).values), case
    t0 = time.perf_counter()
    res = exact_levels(np.array([0.1, 0.5, 0.9]), 10**5)
    assert res.levels.alpha == 10**5 and time.perf_counter() - t0 < 5
    with pytest.raises(ValueError, match="alpha must be below"):
        exact_levels(np.array([0.1, 0.5]), 2**20)


def test_weighted_histogram_levels_weigh_each_sample_s_rounding_variance():
    """Equal weights change nothing; a zero weight drops a sample; integer weights equal repeated
    samples; bad weights are refused."""
    from qodasim.optimize import histogram_levels

    rng = np.random.default_rng(4)
    r = rng.random(3000) ** 3
    r[:3] = [0.0, 1.0, 1 / 64]  # on the grid's edges
    for alpha in (1, 3, 6):
        base = histogram_levels(r, alpha, m=64)
        assert histogram_levels(r, alpha, m=64, weights=np.full(r.size, 2.5)).levels == base.levels
        w = np.where(np.arange(r.size) < 1000, 0.0, 1.0)
        assert histogram_levels(r, alpha, m=64, weights=w).levels == histogram_levels(r[1000:], alpha, m=64).levels
        k = rng.integers(1, 4, r.size)
        assert (
            histogram_levels(r, alpha, m=64, weights=k).levels == histogram_levels(np.repeat(r, k), alpha, m=64).levels
        )
    for bad in (np.zeros(r.size), np.full(r.size, -1.0), np.ones(5), np.full(r.size, np.nan)):
        with pytest.raises(ValueError, match="weights"):
            histogram_levels(r, 2, weights=bad)
