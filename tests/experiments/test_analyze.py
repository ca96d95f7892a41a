"""Named arrays → layouts, the scheme comparison engine, bucketed budgets and ``qodasim analyze``."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from cases import check_analysis_by_monte_carlo

from qodasim import Key, LayerLayout, LayerwiseQuantizer, Levels, Quantizer
from qodasim.cli import main
from qodasim.coding import entropy_floor, expected_bits
from qodasim.experiments.analyze import analyze
from qodasim.experiments.budget import bits_per_coordinate, levels_for_budget, variance_bits_curve
from qodasim.optimize import schemes as S
from qodasim.quantize.layers import named_arrays, types_of, unflatten_tree


def grads(seed=0, scale=True):
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(4):
        s = 10.0 ** rng.uniform(-2, 0) if scale else 1.0
        out[f"conv{i}.weight"] = (rng.standard_normal((8, 4, 3, 3)) * s).astype(np.float32)
        out[f"conv{i}.bias"] = (rng.standard_normal(8) * 0.01).astype(np.float32)
    out["embed.weight"] = (rng.standard_t(3, (50, 8)) * 0.05).astype(np.float32)
    out["fc.weight"] = (rng.standard_normal((10, 64)) * 0.1).astype(np.float32)
    return out


# ------------------------------------------------------------------------------ named arrays
def test_from_arrays_keeps_names_and_shapes_and_round_trips():
    g = grads()
    lay = LayerLayout.from_arrays(g)
    assert lay.names == tuple(g) and lay.shapes == tuple(a.shape for a in g.values())
    assert lay.sizes.tolist() == [a.size for a in g.values()] and lay.n_types == 1
    v = lay.flatten(g)
    assert v.dtype == np.float32 and v.size == lay.d
    back = lay.unflatten(v)
    for n, a in g.items():
        assert np.array_equal(back[n], a) and back[n].shape == a.shape
    assert np.array_equal(v[lay.layer_slice(2)], g["conv1.weight"].ravel())  # C order, layers in order
    with pytest.raises(ValueError, match="missing"):
        lay.flatten({k: a for k, a in list(g.items())[1:]})
    bad = dict(g, **{"fc.weight": g["fc.weight"].T})
    with pytest.raises(ValueError, match="fc.weight"):
        lay.flatten(bad)
    with pytest.raises(ValueError, match="shapes"):
        LayerLayout([4, 3], shapes=[(2, 2), (2, 2)])


def test_pytrees_and_npz_become_named_arrays(tmp_path):
    tree = {"dense": [{"kernel": np.ones((3, 2)), "bias": np.zeros(2)}], "out": (np.ones(4),)}
    lay = LayerLayout.from_arrays(tree)
    assert lay.names == ("dense.0.kernel", "dense.0.bias", "out.0")
    v = np.arange(lay.d, dtype=np.float64)
    rebuilt = unflatten_tree(lay, v, tree)
    assert isinstance(rebuilt["out"], tuple) and rebuilt["dense"][0]["kernel"].shape == (3, 2)
    assert np.array_equal(lay.flatten(rebuilt), v)
    from collections import namedtuple

    Pair = namedtuple("Pair", "w b")
    nt = {"p": Pair(np.ones((2, 2)), np.zeros(2))}
    lay2 = LayerLayout.from_arrays(nt)
    back = unflatten_tree(lay2, np.arange(6.0), nt)
    assert isinstance(back["p"], Pair) and back["p"].b.tolist() == [4.0, 5.0]
    np.savez(tmp_path / "g.npz", **grads())
    with np.load(tmp_path / "g.npz") as z:
        assert list(named_arrays(z)) == list(grads())
    for bad, err in (({"a": np.zeros((0, 3))}, ValueError), ({"a": np.array(["x"])}, TypeError), ({}, ValueError)):
        with pytest.raises(err, match="a|no arrays"):
            LayerLayout.from_arrays(bad)


def test_a_jax_pytree_is_named_arrays():
    jnp = pytest.importorskip("jax.numpy")
    params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}, "head": [jnp.arange(4.0)]}
    lay = LayerLayout.from_arrays(params, types="role")
    assert lay.names == ("dense.kernel", "dense.bias", "head.0") and lay.types.tolist() == [0, 1, 1]
    v = lay.flatten(params)
    assert v.dtype == np.float32 and v[-4:].tolist() == [0.0, 1.0, 2.0, 3.0]
    back = unflatten_tree(lay, v, params)
    assert back["dense"]["kernel"].shape == (3, 2) and isinstance(back["head"], list)


def test_types_by_role_rules_mapping_and_auto():
    g = grads()
    role = types_of(g, "role")  # conv 0, embedding 1, matrix 2, vector 3 (numbered over the roles present)
    assert role.tolist() == [0, 3, 0, 3, 0, 3, 0, 3, 1, 2]
    rules = types_of(g, "conv*.weight=0,*.bias=1,*=2")
    assert rules.tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 2, 2]
    assert types_of(g, [("*.bias", 1), ("*", 0)]).tolist() == [0, 1] * 4 + [0, 0]  # the first match wins
    assert types_of(g, lambda n, s: len(s) % 2).tolist() == [0, 1] * 4 + [0, 0]
    assert types_of(g, {n: i % 2 for i, n in enumerate(g)}).tolist() == [0, 1] * 5
    assert types_of({"w": np.ones((3, 3)), "b": np.ones(3)}, "role").tolist() == [0, 1]  # roles present only
    with pytest.raises(ValueError, match="no rule matches layer 'embed.weight'"):
        types_of(g, "conv*=0,*.bias=1")
    with pytest.raises(ValueError, match="PATTERN=TYPE"):
        types_of(g, "conv*")
    with pytest.raises(ValueError, match="no type for layer"):
        types_of(g, {"fc.weight": 0})
    with pytest.raises(ValueError, match="one type per layer"):
        types_of(g, [0, 1])
    rng = np.random.default_rng(0)  # planted: dense Gaussian layers and sparse spiky ones
    planted = {f"g{i}": rng.standard_normal(2000) for i in range(3)}
    planted.update({f"s{i}": rng.standard_normal(2000) * (rng.random(2000) < 0.05) for i in range(3)})
    from qodasim.optimize import auto_layout

    auto = auto_layout(planted, max_types=3)
    assert auto.n_types == 2 and len(set(auto.types[:3])) == 1 and len(set(auto.types[3:])) == 1
    assert auto.names == tuple(planted) and auto.shapes == ((2000,),) * 6
    with pytest.raises(ValueError, match="auto_layout"):  # fitting types is the optimizer's, one stage up
        LayerLayout.from_arrays(planted, types="auto")


def test_nd_arrays_quantize_as_their_flat_vector():
    g = grads()["conv0.weight"].astype(np.float64)
    lay = LayerLayout([144, 144], [0, 1])
    for Q in (Quantizer(Levels.uniform(5)), Quantizer(Levels.exponential(3), bucket_size=16),
              LayerwiseQuantizer(lay, (Levels.uniform(3), Levels.uniform(9)))):  # fmt: skip
        assert Q.quantize(g, Key(1)).equals(Q.quantize(g.ravel(), Key(1)))
        assert Q.exact_variance(g) == Q.exact_variance(g.ravel())
    with pytest.raises(ValueError, match="non-empty"):
        Quantizer(Levels.uniform(3)).quantize(np.zeros((0, 4)), Key(0))


# ------------------------------------------------------------------------------ bucketed budgets
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


# ------------------------------------------------------------------------------ schemes engine
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


def test_analyze_matches_monte_carlo_and_the_encoder():
    """Every scheme's exact variance against a Monte Carlo of the quantizer (4 exact standard errors,
    fixed keys), its expected bits against the mean of real encoded streams (4 sample standard errors)."""
    g = grads(1)
    res = analyze(g, bits=[3], types="role", codes=["gamma"])
    assert {r["scheme"] for r in res.rows} == set(S.scheme_names(res.layout))
    check_analysis_by_monte_carlo(res, res.layout.flatten(g, np.float64), 3.0)


def test_analyze_report_and_references(tmp_path):
    snaps = [grads(0), grads(1)]
    res = analyze(snaps, bits=[2, 3], types="conv*=0,*=1", K=4, gbps=1.0, schemes=["qsgd", "qsgd-b512", "layer-opt"])
    assert res.snapshots == ["snapshot0", "snapshot1"] and res.layout.n_types == 2
    fp16 = res.references[0]["fp16"]
    v = res.layout.flatten(snaps[0], np.float64)
    assert fp16["variance"] == pytest.approx(np.sum((v.astype(np.float16) - v) ** 2) / np.dot(v, v))
    bf = res.references[0]["bf16"]["variance"]
    assert 1e-7 < bf < 1e-4 and bf > fp16["variance"]  # 8 mantissa bits against 11
    r = res.best(0, 3.0, "gamma")
    assert r["comm_s"] < res.network["fp32_allreduce_s"]
    paths = res.save(tmp_path)
    assert [p.name for p in paths] == ["analysis.md", "analysis.json", "analysis.png", "analysis.pdf"]
    data = json.loads((tmp_path / "analysis.json").read_text())
    assert len(data["rows"]) == len(res.rows) and data["types"] == res.layout.types.tolist()
    text = (tmp_path / "analysis.md").read_text()
    assert "| qsgd-b512 |" in text and "fp16 (reference)" in text
    with pytest.raises(ValueError, match="same named arrays"):
        analyze([grads(0), {"x": np.ones(3)}])
    with pytest.raises(ValueError, match="non-finite"):
        analyze(dict(grads(0), **{"fc.weight": np.full((10, 64), np.nan)}))
    with pytest.raises(ValueError, match="bits"):
        analyze(grads(0), bits=[0])
    with pytest.raises(ValueError, match="schemes"):
        analyze(grads(0), schemes=["topk"])


def test_cli_analyze(tmp_path, capsys):
    f = tmp_path / "g.npz"
    np.savez(f, **grads())
    assert main(["analyze", str(f), "--bits", "3", "--types", "role", "--codes", "gamma", "--out",
                 str(tmp_path / "rep"), "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "3 bits/coord" in out and (tmp_path / "rep" / "analysis.md").is_file()
    (tmp_path / "bad.npz").write_text("not a zip")
    np.savez(tmp_path / "nan.npz", a=np.array([1.0, np.nan]))
    for args, msg in (([str(tmp_path / "missing.npz")], "is not a file"), ([str(tmp_path / "bad.npz")], "not an .npz"),
                      ([str(tmp_path / "nan.npz")], "non-finite"),
                      ([str(f), "--types", "x*=0"], "no rule matches")):  # fmt: skip
        assert main(["analyze", *args, "--out", str(tmp_path / "rep2"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ bucketed solver runs
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
