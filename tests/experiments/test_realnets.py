"""The realnets experiment: real networks' layouts and magnitude families, the comparison table, and each
verdict red under its plausible bug (hand-made mutants of the real code)."""

from __future__ import annotations

import numpy as np
import pytest
from cases import mutant

from qodasim.experiments import networks as N
from qodasim.experiments import realnets as R
from qodasim.optimize import schemes as S
from qodasim.quantize import LayerwiseQuantizer

SMALL = dict(seed=0, layouts=["transformer"], families=["homogeneous", "student"], budgets=[2.0, 3.0], bucket=512,
             scale=2048, method="histogram")  # fmt: skip


ALL_VERDICTS = (
    "gamma_global_wins",
    "fixed_width_layerwise_beats_qsgd",
    "allocation_beats_buckets_when_heterogeneous",
    "per_layer_error_reverses",
    "homogeneous_norms_cost",
)


def _failed(*families: str) -> set:
    """The verdicts that fail on the small setting (on ``families`` only, when given)."""
    res = R.run({**SMALL, "families": list(families or SMALL["families"])}, progress=False)
    return {v.name for v in res.verdicts if not v.passed}


def test_the_layouts_are_resnet18_and_a_gpt2_style_decoder():
    r, t = N.resnet18_layout(), N.transformer_layout()
    assert (r.n_layers, r.d, int(r.sizes.min()), int(r.sizes.max())) == (62, 11_689_512, 64, 2_359_296)
    assert (t.n_layers, t.d) == (52, 10_440_960)
    assert r.names[0] == "conv1.weight" and tuple(r.shapes[0]) == (64, 3, 7, 7) and r.names[-1] == "fc.bias"
    assert sum(1 for s in r.shapes if len(s) == 4) == 20 and t.names[:2] == ("wte.weight", "wpe.weight")
    assert np.bincount(r.types).tolist() == [20, 1, 41]  # kernels, the classifier's matrix, vectors
    assert np.bincount(t.types).tolist() == [2, 16, 34]  # embeddings, matrices, vectors
    small = N.resnet18_layout(256)
    assert small.n_layers == 62 and int(small.sizes.min()) == 1 and small.d < r.d // 200
    with pytest.raises(ValueError, match="layout"):
        N.layout_named("vgg")


@pytest.mark.parametrize("family", N.FAMILIES)
def test_each_family_draws_what_it_says(family):
    lay = N.transformer_layout(64)
    v = N.gradient(lay, family, 3)
    assert np.array_equal(v, N.gradient(lay, family, 3)) and not np.array_equal(v, N.gradient(lay, family, 4))
    rms = np.array([np.sqrt(np.mean(v[lay.layer_slice(l)] ** 2)) for l in range(lay.n_layers)])
    assert np.all(np.isfinite(v)) and np.all(rms > 0)
    spread = rms.max() / rms.min()
    if family == "homogeneous":
        assert spread < 3  # identical layers: only sampling spread (the smallest layers have 6 coordinates)
    if family in ("gaussian", "student"):
        assert spread > 30
    if family == "sparse":
        assert np.mean(v == 0) > 0.4
    if family == "channels":
        w = v[lay.layer_slice(0)].reshape(lay.shapes[0])  # the token embedding: a scale per row
        row = np.sqrt(np.mean(w**2, axis=1))
        assert row.max() / row.min() > 10
    with pytest.raises(ValueError, match="family"):
        N.gradient(lay, "uniform", 0)


def test_per_type_stats_split_the_whole_vector_statistics_by_type():
    lay = N.resnet18_layout(256)
    v = N.gradient(lay, "student", 1)
    v[lay.layer_slice(2)] = 0.0
    from qodasim.levels import Levels

    per = S.LayerLayout(lay.sizes, np.arange(lay.n_layers), names=lay.names, shapes=lay.shapes)
    lvs = tuple(Levels.uniform(1 + l % 5) for l in range(lay.n_layers))  # level counts differ by layer
    for bucket in (None, 64):
        qz = LayerwiseQuantizer(per, lvs, bucket_size=bucket)
        bits, err = S.per_type_stats(v, qz)
        whole, var, rel = S.stats(v, qz, per)
        for c in S.CODES:
            assert bits[c].sum() / lay.d == pytest.approx(whole[c], rel=1e-12)
        assert err.sum() / np.dot(v, v) == pytest.approx(var, rel=1e-12)
        energy = np.add.reduceat(v * v, per.offsets[:-1])
        ok = energy > 0
        assert np.allclose(err[ok] / energy[ok], rel[ok], rtol=1e-12) and err[2] == 0.0
        for l in (0, 7, 40):  # each layer alone, as its own quantizer
            x = v[lay.layer_slice(l)]
            one, _, _ = S.stats(x, S.Quantizer(lvs[l], bucket_size=bucket), S.LayerLayout.single(x.size))
            for c in S.CODES:
                assert bits[c][l] / x.size == pytest.approx(one[c], rel=1e-12)


def test_allocation_hull_is_the_convex_hull_of_every_allocation():
    rng = np.random.default_rng(2)
    lay = S.LayerLayout([40, 25, 60], [0, 1, 2])
    v = rng.standard_normal(lay.d) * np.repeat([1.0, 0.05, 8.0], lay.sizes)
    curve = S.scheme_curve(v, lay, "lgreco", 4.0, max_alpha=6)
    import itertools

    for code in S.CODES:
        for metric in ("variance", "mean_layer_rel"):
            hb, he = S.allocation_hull(curve, code, metric)
            assert np.all(np.diff(hb) > 0) and np.all(np.diff(he) < 0)
            bits = curve.options["bits"][code]
            errs, energy = curve.options["errors"], curve.options["energy"]
            allb, alle = [], []
            for c in itertools.product(*(range(b.size) for b in bits)):
                allb.append(sum(b[i] for b, i in zip(bits, c)) / lay.d)
                e = np.array([errs[l][i] for l, i in enumerate(c)])
                alle.append(e.sum() / np.dot(v, v) if metric == "variance" else np.mean(e / energy))
            for budget in np.linspace(min(allb), max(allb), 9):
                got = S.lower_frontier(hb, he, budget)[0]
                assert got == pytest.approx(S.lower_frontier(allb, alle, budget)[0], rel=1e-9, abs=1e-15)


def test_each_verdict_passes_on_the_family_its_mutant_test_uses():
    """The mutant tests below run one family each: there every verdict passes, and a family-specific
    verdict is left out where its family is absent (so each mutant test's verdict was green)."""
    for family, left_out in (("student", "homogeneous_norms_cost"),
                             ("homogeneous", "allocation_beats_buckets_when_heterogeneous")):  # fmt: skip
        res = R.run({**SMALL, "families": [family]}, progress=False)
        assert all(v.passed for v in res.verdicts), [v for v in res.verdicts if not v.passed]
        assert {v.name for v in res.verdicts} == set(ALL_VERDICTS) - {left_out}


def test_gamma_verdict_goes_red_when_the_gamma_column_holds_fixed_width_bits(monkeypatch):
    """The plausible bug: the codes' columns mixed up (Elias-γ priced as fixed width)."""
    stats, per_type = S.stats, S.per_type_stats

    def mislabeled(f):
        def run(*a, **k):
            out = f(*a, **k)
            out[0]["gamma"] = out[0]["fixed"]
            return out

        return run

    monkeypatch.setattr(S, "stats", mislabeled(stats))
    monkeypatch.setattr(S, "per_type_stats", mislabeled(per_type))
    assert "gamma_global_wins" in _failed("student")


def test_fixed_width_verdict_goes_red_when_layer_norms_become_one_global_norm(monkeypatch):
    def one_norm(*a, **k):  # the bucketed ones keep their buckets (they need scope "layer")
        return LayerwiseQuantizer(*a, **(k if k.get("bucket_size") else {**k, "scope": "global"}))

    monkeypatch.setattr(S, "LayerwiseQuantizer", one_norm)
    assert "fixed_width_layerwise_beats_qsgd" in _failed("student")


def test_allocation_verdict_goes_red_when_every_layer_gets_the_same_width(monkeypatch):
    """The plausible bug: the allocation never runs (L-GreCo's default, one width for every layer), so
    buckets + per-layer widths are bucketed QSGD with buckets cut at layer boundaries."""
    real = S.allocation_hull

    def common_width(curve, code, metric="variance"):
        if not curve.scheme.startswith("lgreco-b"):
            return real(curve, code, metric)
        o = curve.options
        bits = np.sum(np.array(o["bits"][code]), axis=0) / o["layout"].d
        return bits, np.sum(np.array(o["errors"]), axis=0) / o["norm2"]

    monkeypatch.setattr(R, "allocation_hull", common_width)
    assert "allocation_beats_buckets_when_heterogeneous" in _failed("student")


def test_per_layer_verdict_goes_red_when_the_per_layer_column_reads_the_whole_vector_error(monkeypatch):
    real = R._side_points
    monkeypatch.setattr(R, "_side_points", lambda c, s, code, metric: real(c, s, code, "variance"))
    assert "per_layer_error_reverses" in _failed("student")


def test_homogeneous_verdict_goes_red_when_per_layer_norms_are_not_charged(monkeypatch):
    mutant(monkeypatch, S, "stats", "norms_bits = 32 * plan.n_groups", "norms_bits = 32")
    mutant(monkeypatch, S, "per_type_stats", "norms = 32.0 * np.bincount(", "norms = 0.0 * np.bincount(")
    assert "homogeneous_norms_cost" in _failed("homogeneous")


def test_bad_configs_name_the_key():
    with pytest.raises(ValueError, match="families"):
        R.run({**SMALL, "families": ["gaussian", "uniform"]}, progress=False)
    with pytest.raises(ValueError, match="bucket"):
        R.run({**SMALL, "bucket": 100}, progress=False)


def test_recorded_gradients_are_compared_instead_and_the_family_verdicts_left_out(tmp_path, monkeypatch):
    from cases import grads

    for seed in (1, 2):
        np.savez(tmp_path / f"grads_step{seed:06d}.npz", **grads(seed))
    monkeypatch.chdir(tmp_path)
    res = R.run({**SMALL, "gradients": ["grads_step*.npz"]}, progress=False)
    assert {r["layout"] for r in res.data["rows"]} == {"grads_step000001", "grads_step000002"}
    assert {r["family"] for r in res.data["rows"]} == {"recorded"}
    assert [v.name for v in res.verdicts] == ["gamma_global_wins", "fixed_width_layerwise_beats_qsgd",
                                              "per_layer_error_reverses"]  # fmt: skip
    assert "recorded gradients grads_step000001 (d = " in res.verdicts[0].detail
    name, lay, v = R.recorded_vectors(["grads_step000001.npz"])[0]
    g = grads(1)
    assert lay.names == tuple(g) and np.array_equal(v, lay.flatten(g, np.float64)) and lay.n_types == 4
    with pytest.raises(ValueError, match="matches no file"):
        R.run({**SMALL, "gradients": ["nothing*.npz"]}, progress=False)
    with pytest.raises(ValueError, match="GRADS"):
        R.run({**SMALL, "gradients": ["missing.npz"]}, progress=False)
