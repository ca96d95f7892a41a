"""Level policies inside the solver: Reoptimize, L-GreCo, DQ schedule, FindTypes, their dictionaries and edges."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cases import two_type_sample

from qodasim.coding import expected_bits
from qodasim.experiments import budget as bd
from qodasim.levels import Levels
from qodasim.optimize import lgreco_brute_force
from qodasim.quantize import LayerLayout, LayerwiseQuantizer, Quantizer
from qodasim.solvers import DQSchedule, FindTypes, LGreCo, Reoptimize, SolverConfig, SolverError
from qodasim.solvers.policies import policy_from, policy_to_dict
from qodasim.vi import NoiseModel, layered_problem


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


def test_reoptimize_policy_is_the_reoptimize_every_shorthand_bit_for_bit(run_solver):
    p = layered_problem([16, 8, 24], [1.0, 0.2, 1.0], types=[0, 1, 0], seed=1)
    base = dict(method="qoda", K=2, T=60, compression="layerwise", levels=("uniform:3", "uniform:3"), replicas=2,
                seed=3,
                noise=NoiseModel("absolute", 0.3))  # fmt: skip
    a = run_solver(p, reoptimize_every=20, **base)
    b = run_solver(p, policy={"policy": "reoptimize", "every": 20}, **base)
    c = run_solver(p, **base)
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


def test_lgreco_inside_qoda_cuts_bits_per_iteration_after_its_first_update(run_solver):
    p = layered_problem([40, 10, 60, 12], [1.0, 0.05, 1.0, 0.05], types=[0, 1, 0, 1], seed=3)
    base = dict(method="qoda", K=2, T=80, compression="layerwise", levels=("uniform:15", "uniform:15"), replicas=2,
                seed=1, noise=NoiseModel("absolute", 0.1))  # fmt: skip
    res = run_solver(p, policy=LGreCo(every=20, alpha=2.0), **base)
    ref = run_solver(p, **base)
    assert res.status == "ok"
    assert np.array_equal(res.bits_per_iteration[:, :20], ref.bits_per_iteration[:, :20])  # same run until t = 20
    assert res.bits_per_iteration[:, 20:].mean() < 0.9 * ref.bits_per_iteration[:, 20:].mean()
    assert isinstance(res.quantizer, LayerwiseQuantizer) and res.quantizer.scope == "layer"


def test_dq_schedule_follows_its_formula_and_grows_towards_the_end_of_a_contracting_run(run_solver):
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
    res = run_solver(
        p,
        method="gda",
        K=2,
        T=60,
        step=0.5,
        compression="global",
        levels="uniform:1",
        noise=NoiseModel("absolute", 1.0),
        policy=DQSchedule(c=4.0, rho=0.8),
        seed=2,
    )
    b = res.bits_per_iteration[0]
    assert b[-10:].mean() > 1.2 * b[1:11].mean()  # ρ^{(T−1−t)/2} grows towards the end
    for bad in (dict(c=0.0), dict(rho=0.0), dict(s_min=0), dict(s_min=5, s_max=4), dict(every=0)):
        with pytest.raises(ValueError):
            DQSchedule(**bad)


def test_find_types_recovers_planted_layer_types_inside_the_solver(run_solver):
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
    res = run_solver(
        p,
        method="qoda",
        K=2,
        T=40,
        compression="layerwise",
        levels=("uniform:3",),
        policy=FindTypes(every=10, max_types=2),
        noise=NoiseModel("absolute", 0.5),
    )
    assert res.status == "ok" and res.quantizer.layout.d == p.d and res.config["policy"]["policy"] == "findtypes"


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
