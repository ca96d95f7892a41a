"""Equal-budget harness (qodasim.experiments.budget), level policies inside the solver
(qodasim.solvers.policies), and the verdicts of experiments 9–10 and the rebuilt 2, 4, 5 going red under
plausible bugs (THEORY §7.2–7.5, issue 13)."""

from __future__ import annotations

import inspect
import itertools
import sys
import textwrap

import numpy as np
import pytest

from qodasim.coding import expected_bits
from qodasim.experiments import budget as bd
from qodasim.experiments import load_config
from qodasim.levels import Levels
from qodasim.optimize import lgreco_brute_force
from qodasim.quantize import LayerLayout, LayerwiseQuantizer, Quantizer
from qodasim.solvers import DQSchedule, FindTypes, LGreCo, Reoptimize, SolverConfig, SolverError, solve
from qodasim.solvers.policies import policy_from, policy_to_dict
from qodasim.vi import NoiseModel, layered_problem


def mutant(monkeypatch, owner, name: str, old: str, new: str) -> None:
    """Replace ``owner.name`` (a module's function or a class's method) by a copy of its source with
    ``old`` replaced by ``new`` (exactly once): a hand-made mutant of the real code, as a
    mutation-testing tool would make."""
    fn = getattr(owner, name)
    module = sys.modules[fn.__module__]
    src = textwrap.dedent(inspect.getsource(fn))
    assert src.count(old) == 1, f"{old!r} occurs {src.count(old)} times in {name}"
    ns = dict(vars(module))
    exec(compile(src.replace(old, new), module.__file__, "exec"), ns)  # noqa: S102
    monkeypatch.setattr(owner, name, ns[name])


def two_type_sample(seed: int = 0, sizes=(300, 80, 500, 60), ratio: float = 10.0):
    rng = np.random.default_rng(seed)
    layout = LayerLayout(list(sizes), [0, 1, 0, 1])
    v = rng.standard_normal(layout.d)
    for l in (1, 3):
        sl = layout.layer_slice(l)
        v[sl] = v[sl] / ratio * (rng.random(sl.stop - sl.start) < 0.2) * 2.0
    return layout, v


# ---------------------------------------------------------------------------------------------- the harness
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


# ---------------------------------------------------------------------------------------------- policies
def test_policy_dicts_round_trip_and_bad_policies_are_solver_errors():
    for pol in (Reoptimize(7, "exact"), LGreCo(every=5, alpha=1.5, options=(1, 4)), DQSchedule(c=2.0, rho=0.9),
                FindTypes(every=3, max_types=2)):  # fmt: skip
        d = policy_to_dict(pol)
        assert policy_from(d) == pol and policy_from(pol) is pol
    assert policy_from(None) is None and policy_to_dict(None) is None
    lay = dict(compression="layerwise", levels=("uniform:3",))
    for bad in ({"policy": "nope"}, {"policy": "lgreco", "every": 0}, {"policy": "dq", "rho": 1.5},
                {"policy": "dq", "colour": 1}, {"policy": "lgreco", "alpha": -1.0}, "lgreco"):  # fmt: skip
        with pytest.raises(SolverError):
            SolverConfig(policy=bad, **lay)
    with pytest.raises(SolverError, match="layerwise"):
        SolverConfig(policy=LGreCo(), compression="global", levels="uniform:3")
    with pytest.raises(SolverError, match="scope"):
        SolverConfig(policy=LGreCo(), scope="global", **lay)
    with pytest.raises(SolverError, match="not both"):
        SolverConfig(policy=DQSchedule(), reoptimize_every=5, **lay)
    cfg = SolverConfig(policy={"policy": "lgreco", "every": 9, "options": [2, 8]}, **lay)
    assert cfg.to_dict()["policy"] == {**policy_to_dict(LGreCo(every=9, options=(2, 8)))}


def test_reoptimize_policy_is_the_reoptimize_every_shorthand_bit_for_bit():
    p = layered_problem([16, 8, 24], [1.0, 0.2, 1.0], types=[0, 1, 0], seed=1)
    base = dict(method="qoda", K=2, T=60, compression="layerwise", levels=("uniform:3", "uniform:3"), replicas=2,
                seed=3,
                noise=NoiseModel("absolute", 0.3))  # fmt: skip
    a = solve(p, SolverConfig(reoptimize_every=20, **base))
    b = solve(p, SolverConfig(policy={"policy": "reoptimize", "every": 20}, **base))
    c = solve(p, SolverConfig(**base))
    assert np.array_equal(a.bits_per_iteration, b.bits_per_iteration)
    assert np.array_equal(a.measures["gap_avg"], b.measures["gap_avg"])
    assert not np.array_equal(a.bits_per_iteration, c.bits_per_iteration)  # the levels did change


def test_lgreco_choice_is_the_dp_optimum_and_the_quantizer_it_builds_has_the_table_s_costs():
    """The quantizer L-GreCo builds (layers that chose the same levels share a type) has exactly the
    exact bits and variance the table promised, meets the error budget, and costs no more than the
    exhaustive optimum at the slightly tighter budget of the DP's guarantee."""
    layout, v = two_type_sample(5, sizes=(120, 40, 200, 30))
    start = LayerwiseQuantizer(layout, (Levels.uniform(8), Levels.uniform(8)), scope="layer")
    pol = LGreCo(alpha=1.0, options=(1, 2, 4, 16), buckets=2000)
    bits, errors, cands = pol.table(start, v)
    got = pol.choose(start, v)
    layers = [v[layout.layer_slice(l)] for l in range(layout.n_layers)]
    gb = [expected_bits(x, Quantizer(got.levels[int(got.layout.types[l])]), "dense", "gamma")["payload"]
          for l, x in enumerate(layers)]  # fmt: skip
    ge = [Quantizer(got.levels[int(got.layout.types[l])]).exact_variance(x) for l, x in enumerate(layers)]
    pick = [next(o for o in range(len(cands[l])) if cands[l][o] == got.levels[int(got.layout.types[l])])
            for l in range(layout.n_layers)]  # fmt: skip
    assert np.allclose(gb, [bits[l][o] for l, o in enumerate(pick)], rtol=1e-12)
    assert np.allclose(ge, [errors[l][o] for l, o in enumerate(pick)], rtol=1e-12)
    assert got.exact_variance(v) == pytest.approx(sum(ge), rel=1e-12)
    budget = sum(e[0] for e in errors)
    assert sum(ge) <= budget * (1 + 1e-12)
    assert sum(gb) <= sum(b[0] for b in bits) + 1e-9
    _, tight = lgreco_brute_force(bits, errors, np.zeros(4, np.int64), 1.0 - layout.n_layers / 2000)
    assert sum(gb) <= tight + 1e-9
    assert got.layout.n_types == len({tuple(lv.values) for lv in got.levels})  # one type per distinct table
    # a looser error budget never costs more bits
    loose = LGreCo(alpha=3.0, options=(1, 2, 4, 16), buckets=2000).choose(start, v)
    lb = sum(expected_bits(x, Quantizer(loose.levels[int(loose.layout.types[l])]), "dense", "gamma")["payload"]
             for l, x in enumerate(layers))  # fmt: skip
    assert lb <= sum(gb) + 1e-9


def test_lgreco_bit_budget_mode_minimizes_error_within_the_bits():
    """``bits_per_coord``: payload + norms within the budget, and the error no more than the exhaustive
    optimum's at the slightly tighter bit budget of the DP's guarantee."""
    layout, v = two_type_sample(6, sizes=(150, 50, 220, 40))
    start = LayerwiseQuantizer(layout, (Levels.uniform(8), Levels.uniform(8)), scope="layer")
    for B in (1.8, 2.5, 3.5):
        pol = LGreCo(options=(1, 2, 4, 16), buckets=2000, bits_per_coord=B)
        bits, errors, _ = pol.table(start, v)
        got = pol.choose(start, v)
        assert bd.bits_per_coordinate(v, got) <= B * (1 + 1e-12)
        payload = B * layout.d - 32 * layout.n_layers
        own = sum(b[0] for b in bits)
        _, best = lgreco_brute_force(errors, bits, np.zeros(4, np.int64), payload / own * (1 - 4 / 2000))
        assert got.exact_variance(v) <= best * (1 + 1e-9)
    with pytest.raises(ValueError, match="no payload"):
        LGreCo(bits_per_coord=0.01).choose(start, v)
    with pytest.raises(ValueError):
        LGreCo(bits_per_coord=-2.0)


def test_lgreco_inside_qoda_cuts_bits_per_iteration_after_its_first_update():
    p = layered_problem([40, 10, 60, 12], [1.0, 0.05, 1.0, 0.05], types=[0, 1, 0, 1], seed=3)
    base = dict(method="qoda", K=2, T=80, compression="layerwise", levels=("uniform:15", "uniform:15"), replicas=2,
                seed=1, noise=NoiseModel("absolute", 0.1))  # fmt: skip
    res = solve(p, SolverConfig(policy=LGreCo(every=20, alpha=2.0), **base))
    ref = solve(p, SolverConfig(**base))
    assert res.status == "ok"
    assert np.array_equal(res.bits_per_iteration[:, :20], ref.bits_per_iteration[:, :20])  # same run until t = 20
    assert res.bits_per_iteration[:, 20:].mean() < 0.9 * ref.bits_per_iteration[:, 20:].mean()
    assert isinstance(res.quantizer, LayerwiseQuantizer) and res.quantizer.scope == "layer"


def test_dq_schedule_follows_its_formula_and_grows_towards_the_end_of_a_contracting_run():
    pol = DQSchedule(c=3.0, rho=0.9, s_min=2, s_max=40)
    for norm, t, T in itertools.product([0.01, 1.0, 7.5], [0, 5, 49], [50]):
        want = min(max(int(np.ceil(3.0 * norm * 0.9 ** ((T - 1 - t) / 2))), 2), 40)
        assert pol.levels_at(norm, t, T) == want
    assert pol.levels_at(np.inf, 0, 10) == 40
    q = Quantizer(Levels.uniform(2))
    assert pol.update(q, np.array([0.1, 0.0]), 49, 50) is None  # s = 2 already
    assert pol.update(q, np.array([3.0, 4.0]), 49, 50).levels == Levels.uniform(15)
    assert pol.update(q, np.array([np.nan, 1.0]), 49, 50) is None
    p = layered_problem([20, 20], [1.0, 1.0], seed=0, mu=0.5)
    res = solve(p, SolverConfig(method="gda", K=2, T=60, step=0.5, compression="global", levels="uniform:1",
                                noise=NoiseModel("absolute", 1.0), policy=DQSchedule(c=4.0, rho=0.8),
                                seed=2))  # fmt: skip
    b = res.bits_per_iteration[0]
    assert b[-10:].mean() > 1.2 * b[1:11].mean()  # ρ^{(T−1−t)/2} grows towards the end
    for bad in (dict(c=0.0), dict(rho=0.0), dict(s_min=0), dict(s_min=5, s_max=4), dict(every=0)):
        with pytest.raises(ValueError):
            DQSchedule(**bad)


def test_find_types_recovers_planted_layer_types_inside_the_solver():
    """Three planted kinds of layer (Gaussian, sparse spiky, Laplace-like): the first update of the
    policy maps the layers to their kinds (up to relabeling) and gives each kind its own levels."""
    rng = np.random.default_rng(0)
    kinds = [0, 1, 2, 0, 1, 2, 0, 1]
    sizes = [int(n) for n in rng.integers(800, 1600, len(kinds))]
    parts = []
    for k, n in zip(kinds, sizes):
        x = rng.standard_normal(n)
        parts.append(x if k == 0 else x * (rng.random(n) < 0.1) if k == 1 else rng.laplace(size=n) ** 3)
    v = np.concatenate(parts)
    start = LayerwiseQuantizer(LayerLayout(sizes, [0] * len(sizes)), (Levels.uniform(4),), scope="layer")
    got = FindTypes(every=10, max_types=4, alpha=3).update(start, v, 10, 100)
    t = got.layout.types.tolist()
    assert len(set(t)) == 3 and all((t[i] == t[j]) == (kinds[i] == kinds[j]) for i in range(8) for j in range(8))
    assert got.layout.sizes.tolist() == sizes and len(got.levels) == 3
    again = FindTypes(every=10, max_types=4, alpha=3).update(got, v, 20, 100)  # later: levels only, types kept
    assert again.layout.types.tolist() == t
    p = layered_problem([30, 10, 30, 10], [1.0, 0.1, 1.0, 0.1], types=[0, 0, 0, 0], seed=0)
    res = solve(p, SolverConfig(method="qoda", K=2, T=40, compression="layerwise", levels=("uniform:3",),
                                policy=FindTypes(every=10, max_types=2),
                                noise=NoiseModel("absolute", 0.5)))  # fmt: skip
    assert res.status == "ok" and res.quantizer.layout.d == p.d and res.config["policy"]["policy"] == "findtypes"


# ---------------------------------------------------------------------------------------------- verdicts
EQ_SMALL = dict(ratios=[1.0, 10.0], shapes=["same"], size_factors=[1], budgets=[3.0], T=200, replicas=2,
                alphas=[0, 1, 2, 3, 4, 6, 8, 14, 20, 30, 46, 62], lgreco_every=40)  # fmt: skip


def _equalbits(**over):
    from qodasim.experiments import equalbits

    _, config = load_config("equalbits", "quick")
    result = equalbits.run(dict(config, **EQ_SMALL, **over), progress=False)
    return {v.name: v.passed for v in result.verdicts}, result


def test_equalbits_small_setting_passes_and_goes_red_when_lgreco_ignores_the_error_budget(monkeypatch):
    ok, _ = _equalbits()
    assert all(ok.values()), ok
    from qodasim.solvers import policies

    def greedy(bits, errors, default, alpha=1.0, buckets=1000):  # the plausible bug: budget never checked
        return np.array([int(np.argmin(b)) for b in bits])

    monkeypatch.setattr(policies, "lgreco", greedy)
    ok, _ = _equalbits()
    assert not ok["lgreco_fewer_bits"]


def test_equalbits_homogeneous_check_goes_red_when_the_single_norm_scope_is_dropped(monkeypatch):
    """The plausible bug: ``scope="global"`` not passed through, so 'levels only' silently uses per-layer
    norms — then identical types look like a large loss per bit."""
    real = bd._quantizer
    monkeypatch.setattr(bd, "_quantizer", lambda v, lay, a, k, q, m, scope: real(v, lay, a, k, q, m, "layer"))
    ok, _ = _equalbits()
    assert not ok["homogeneous_no_gain"]


def test_equalbits_per_type_fit_goes_red_when_every_type_gets_type_0s_levels(monkeypatch):
    """The plausible bug of issue 32: the per-type fit hands every type type 0's levels. Every per-bit
    verdict still passes (the gains barely move); ``per_type_levels_fit`` goes red."""
    from qodasim import LayerwiseQuantizer

    real = bd._quantizer

    def type0_everywhere(v, lay, a, k, q, m, scope):
        quant = real(v, lay, a, k, q, m, scope)
        if lay is None:
            return quant
        return LayerwiseQuantizer(lay, (quant.type_levels[0],) * lay.n_types, scope=scope, q=q)

    monkeypatch.setattr(bd, "_quantizer", type0_everywhere)
    ok, result = _equalbits()
    assert not ok["per_type_levels_fit"]
    assert all(x["shared_over_own"] == 1.0 for x in result.data["per_type_fit"])


def test_equalbits_map_solver_agreement_goes_red_when_the_gain_is_inverted(monkeypatch):
    """The plausible bug: the gain written layer-wise/global instead of global/layer-wise — the map then
    names the wrong winner and disagrees with QODA at equal bits."""
    from qodasim.experiments import equalbits

    mutant(monkeypatch, equalbits, "regime_map", 'row[f"gain_{kind}"] = g / at_bits(c["layerwise"], B)',
           'row[f"gain_{kind}"] = at_bits(c["layerwise"], B) / g')  # fmt: skip
    ok, _ = _equalbits()
    assert not ok["solver_agrees_with_map"]


DQ_SMALL = dict(quad_T=100, replicas=16, bootstrap=100, quad_fixed_s=[1, 2, 4, 8, 16, 32], quad_dq_c=[3.0, 10.0],
                game_T=40, game_fixed_s=[1, 4], game_dq_c=[1.0])  # fmt: skip


def test_dqsgd_verdict_passes_and_goes_red_when_the_schedule_is_never_applied(monkeypatch):
    from qodasim.experiments import dqsgd

    _, config = load_config("dqsgd", "quick")
    res = dqsgd.run(dict(config, **DQ_SMALL), progress=False)
    assert res.passed, res.verdicts
    monkeypatch.setattr(DQSchedule, "update", lambda self, quant, v, t, T, start=None: None)
    res = dqsgd.run(dict(config, **DQ_SMALL), progress=False)
    assert not res.passed


def test_dqsgd_frontier_interpolates_in_log_log_and_refuses_to_extrapolate():
    from qodasim.experiments.dqsgd import frontier_bits

    bits, err = [10.0, 20.0, 40.0, 80.0], [1.0, 0.5, 0.6, 0.1]  # 40 is dominated by 20
    assert frontier_bits(bits, err, 0.5) == pytest.approx(20.0)
    want = np.exp(np.interp(-np.log(0.2), -np.log([0.5, 0.1]), np.log([20.0, 80.0])))
    assert frontier_bits(bits, err, 0.2) == pytest.approx(want)
    assert np.isnan(frontier_bits(bits, err, 0.05)) and np.isnan(frontier_bits(bits, err, 2.0))


COMM_SMALL = dict(T=200, replicas=2, K=2, stable_T=200)


def _communication(**over):
    from qodasim.experiments import communication

    _, config = load_config("communication", "quick")
    res = communication.run(dict(config, **COMM_SMALL, **over), progress=False)
    return {v.name: v.passed for v in res.verdicts}


def test_communication_small_setting_passes():
    ok = _communication()
    assert all(ok.values()), ok


def test_communication_verdicts_go_red_when_qgenx_wastes_its_first_message(monkeypatch):
    """The bug the old verdict let through: Q-GenX sends its first message but extrapolates with the
    previous vector (QODA's).  Messages and bits are unchanged; what the second message buys is gone."""
    from qodasim.solvers import genx

    mutant(monkeypatch, genx._Loop, "lead", "return self.oracle(it.X, t, rnd)",
           "self.oracle(it.X, t, rnd)\n        return it.Vprev, it.Wprev")  # fmt: skip
    ok = _communication()
    assert ok["messages"] and not ok["second_message_buys_stability"]


def test_communication_equal_bits_verdict_goes_red_when_a_round_s_bits_overwrite_the_iteration_s(monkeypatch):
    """``=`` for ``+=``: Q-GenX's two messages of an iteration count as one in the bits (the ledger still
    shows two) — at equal bits the two methods then look alike."""
    from qodasim.solvers import genx

    mutant(monkeypatch, genx._StreamBits, "count", "oracle.bits[r, t - 1] += msg.nbits",
           "oracle.bits[r, t - 1] = msg.nbits")  # fmt: skip
    ok = _communication()
    assert ok["messages"] and not ok["qoda_wins_at_equal_bits"]


def test_communication_messages_verdict_goes_red_when_qoda_calls_a_fresh_oracle(monkeypatch):
    """QODA built with Q-GenX's template (a fresh oracle call to extrapolate from): two messages per
    iteration, and the one-message claim goes red."""
    from qodasim.solvers import genx

    monkeypatch.setitem(genx.TEMPLATES, "qoda", genx.Template("oracle", True))
    ok = _communication()
    assert not ok["messages"]


def test_communication_per_iteration_verdict_goes_red_when_qgenx_extrapolates_from_the_start(monkeypatch):
    """Q-GenX's first message computed at the starting point instead of ``X_t``: its gap per iteration
    is no longer comparable to QODA's.  (The check is coarse on this problem: with ``Y -= lead`` — plain
    dual averaging at ``X_t``, no extrapolation — the ratio stays at 0.99 for T ≤ 1000; that bug is
    caught by ``second_message_buys_stability`` instead.)"""
    from qodasim.solvers import genx

    mutant(monkeypatch, genx._Loop, "lead", "return self.oracle(it.X, t, rnd)", "return self.oracle(it.X1b, t, rnd)")
    ok = _communication()
    assert not ok["per_iteration_comparable"]


def test_k_exponent_verdict_goes_red_when_workers_share_one_noise_stream(monkeypatch):
    """Workers drawing the same noise: averaging over K removes nothing, the exponent of K is ≈ 0."""
    from qodasim.experiments import convergence
    from qodasim.vi.noise import NoiseModel as NM

    real = NM._add_noise

    def shared(self, A, seed, workers, call, out):
        real(self, A, seed, [0] * len(workers), call, out)

    monkeypatch.setattr(NM, "_add_noise", shared)
    _, config = load_config("convergence", "quick")
    config = dict(config, T=200, replicas=4, K_scaling=[1, 4, 16], T_scaling=1000, bootstrap=50)
    res = convergence.run(config, progress=False)
    v = next(v for v in res.verdicts if v.name == "noise_K_exponent")
    assert not v.passed and abs(res.data["K_exponent"]) < 0.2


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


def test_sparse_slope_verdict_goes_red_when_sparse_bits_are_counted_as_dense(monkeypatch):
    from qodasim import coding
    from qodasim.experiments import codelength

    real = coding.expected_bits
    _, config = load_config("codelength", "quick")
    config = dict(config, d=[64, 4096], n_draws=20, slope_d=[2**12, 2**14, 2**16, 2**18], slope_levels=[2])
    ok = {v.name: v.passed for v in codelength.run(config, progress=False).verdicts}
    assert ok["sparse_slope_to_half"]
    monkeypatch.setattr(
        coding, "expected_bits", lambda v, q, protocol="dense", code="gamma", **kw: real(v, q, "dense", code, **kw)
    )
    ok = {v.name: v.passed for v in codelength.run(config, progress=False).verdicts}
    assert not ok["sparse_slope_to_half"]


@pytest.mark.parametrize(
    "lv", [Levels.uniform(1), Levels.uniform(24), Levels.exponential(6, 0.3), Levels(np.array([0.0, 0.1, 0.7, 1.0]))]
)
def test_levels_spec_reads_back_to_equal_levels(lv):
    back = Levels.parse(lv.to_spec())
    assert np.array_equal(back.values, lv.values)
    assert lv.to_spec().startswith("uniform:") == bool(lv.uniform_s)


def test_policy_edges_found_by_mutation_testing():
    """Survivors of ``tools/mutation.py solvers/policies``: the DQ schedule on a layer-wise quantizer
    (every type gets the new levels; unchanged levels give ``None``), the level-count bounds of
    L-GreCo's options and a bit budget below one bit per coordinate."""
    lay = LayerwiseQuantizer(LayerLayout([3, 4], [0, 1]), (Levels.uniform(2), Levels.uniform(5)), scope="layer")
    pol = DQSchedule(c=1.0, rho=1.0)
    new = pol.update(lay, np.array([3.0, 4.0, 0, 0, 0, 0, 0]), 9, 10)
    assert new.levels == (Levels.uniform(5), Levels.uniform(5))
    assert pol.update(new, np.array([3.0, 4.0, 0, 0, 0, 0, 0]), 9, 10) is None
    assert LGreCo(options=(1, 65535)).options == (1, 65535)
    for bad in ((0,), (65536,), (2, 70000), ()):
        with pytest.raises(ValueError):
            LGreCo(options=bad)
    assert LGreCo(bits_per_coord=0.5).bits_per_coord == 0.5
    for bad in (0.0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError):
            LGreCo(bits_per_coord=bad)


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
