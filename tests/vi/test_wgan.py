"""A real nonlinear game: the WGAN operator (jax) against finite differences, its layout
against the parameter tree, reproducible seeded runs, and the experiment's verdicts going red under
plausible bugs.  The ``jax`` extra is in ``dev``; without it these tests skip (and CI requires it)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from qodasim.experiments import load_config
from qodasim.solvers import AdaptiveStep, SolverConfig, solve
from qodasim.vi import NoiseModel

if os.environ.get("QODASIM_REQUIRE_JAX") == "1":
    import jax  # noqa: F401  (CI: these tests must run)
jax = pytest.importorskip("jax")
from qodasim.vi.wgan import WGANProblem, energy_distance, wgan  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return wgan("digits", hidden=16, seed=3)


@pytest.mark.parametrize("kw", [dict(data="digits", hidden=16, seed=3), dict(data="gaussians8", hidden=8, seed=1),
                                dict(data="gaussians8", hidden=8, clip=0.0, penalty=5.0, seed=2)])  # fmt: skip
def test_operator_is_the_simultaneous_gradient_by_finite_differences(kw):
    """⟨A(x), u⟩ with the critic part negated back equals the central difference of f along u
    (random points and directions; step 1e-5, float64: agreement to ~1e-8 relative)."""
    p = WGANProblem(**kw)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = p.x0() + 0.3 * rng.standard_normal(p.d)
        g = p.operator(x[None])[0].copy()
        g[p.n_generator :] *= -1.0  # A = (∇_θ f, −∇_φ f)
        for u in (rng.standard_normal(p.d), np.eye(p.d)[rng.integers(p.d)]):
            h = 1e-5
            fd = (p.objective(x + h * u) - p.objective(x - h * u)) / (2 * h)
            assert g @ u == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_layout_matches_the_parameter_tree(digits):
    p = digits
    h, lat, px = 16, 8, 64
    shapes = [(lat, h), (h,), (h, h), (h,), (h, px), (px,), (px, h), (h,), (h, h), (h,), (h, 1), (1,)]
    assert list(p.layout.sizes) == [int(np.prod(s)) for s in shapes]
    assert p.d == sum(p.layout.sizes) and p.n_generator == sum(p.layout.sizes[:6])
    assert p.layout.names[0] == "generator.first.weight" and p.layout.names[-1] == "critic.last.bias"
    assert list(p.layout.types) == [0, 1] * 3 + [2, 3] * 3
    fine = wgan("digits", hidden=16, typing="position")
    assert fine.layout.n_types == 12 and len(set(fine.layout.types)) == 12
    # the generator's output layer has the data's dimension; the critic's last bias gets no gradient
    A = p.operator(p.x0()[None])[0]
    assert not np.any(A[p.layout.layer_slice(11)])


def test_projection_clips_the_critic_only(digits):
    p = digits
    X = np.full((2, p.d), 5.0)
    Y = p.project(X)
    assert np.all(Y[:, : p.n_generator] == 5.0) and np.all(Y[:, p.n_generator :] == p.clip)
    assert np.array_equal(p.project(Y), Y)


def test_minibatch_operators_are_unbiased_estimates_of_one_expectation():
    """The mean of 400 workers' 32-point minibatch operators and an independent 12,800-point estimate
    built here (training points drawn uniformly, standard normal latents, the network's field called
    directly) estimate the same expectation.  Tolerance: 6 combined standard errors per coordinate
    (the SE of the workers' mean from their spread; the big batch has the same SE), fixed seed."""
    p = wgan("gaussians8", hidden=8, seed=0)
    x = p.x0()[None] + 0.2
    rng = np.random.default_rng(1)
    S = p.sample_operator(x, 400, 32, rng)[0]
    n = 12_800
    other = np.random.default_rng(2)
    big = p._call_field(x, p.train[other.integers(0, p.train.shape[0], n)][None],
                        other.standard_normal((1, n, p.latent)), other.random((1, n)))[0]  # fmt: skip
    se = S.std(axis=0, ddof=1) / np.sqrt(S.shape[0])
    live = se > 0
    z = np.abs(S.mean(axis=0) - big)[live] / (se[live] * np.sqrt(2.0))
    assert z.max() < 6, z.max()


def test_seeded_runs_are_reproducible_and_seeds_matter(run_solver, digits):
    cfg = SolverConfig(method="qoda", K=2, T=12, compression="layerwise", levels="uniform:5", record=3,
                       noise=NoiseModel("finite_sum", batch=16), step=AdaptiveStep(c=1.0), seed=4)  # fmt: skip
    a, b = solve(digits, cfg), solve(digits, cfg)
    assert np.array_equal(a.x_last, b.x_last) and np.array_equal(a.bits_per_iteration, b.bits_per_iteration)
    assert set(a.measures) == {f"{m}_{w}" for m in ("opnorm", "energy", "frechet", "coverage") for w in ("avg", "last")}
    c = run_solver(digits, **{**cfg.to_dict(), "seed": 5, "noise": cfg.noise})
    assert not np.array_equal(a.x_last, c.x_last)


def test_energy_distance_is_zero_for_equal_samples_and_symmetric():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(50, 3)), rng.normal(1.0, size=(60, 3))
    assert energy_distance(X, X) == pytest.approx(0.0, abs=1e-12)
    assert energy_distance(X, Y) == pytest.approx(energy_distance(Y, X), rel=1e-12)


def test_mixture_counts_modes():
    p = wgan("gaussians8", hidden=8, seed=0)
    m = p.measures(p.x0())
    assert set(m) == {"opnorm", "energy", "modes"}
    assert 0 <= m["modes"](p.x0()[None])[0] <= 8


@pytest.mark.parametrize(("kw", "match"), [({"data": "cifar"}, "data"), ({"hidden": 0}, "hidden"),
                                           ({"clip": -1.0}, "clip"), ({"typing": "depth"}, "typing")])  # fmt: skip
def test_bad_arguments_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        WGANProblem(**kw)


SMALL = dict(T=60, Ks=[2], record=3, hidden=8)


def _names(result, passed):
    return {v.name for v in result.verdicts if v.passed == passed}


def _run(**over):
    from qodasim.experiments import wgan as exp

    _, config = load_config("wgan", "quick")
    return exp.run(dict(config, **over), progress=False)


def _case(unc=(0.8, 10), lw=(0.9, 9), refs=None):
    """Runs and reference rows for the verdict logic alone (Fréchet distance, classes)."""
    refs = refs or {"gaussian fit": 1.0, "real training digits": 0.2, "one class (8)": 20.0, "initial generator": 5.0}
    cover = {"real training digits": 10, "one class (8)": 1}
    refs = {k: {"frechet": v, "coverage": cover.get(k, 10)} for k, v in refs.items()}
    runs = [{"K": 4, "method": m, "compression": c, "status": "ok", "frechet": [5.0, fd], "coverage": [10, cov]}
            for (m, c), (fd, cov) in {("qoda", "none"): unc, ("qoda", "layerwise"): lw, ("qoda", "global"): lw,
                                      ("qgenx", "layerwise"): lw}.items()]  # fmt: skip
    return runs, refs


@pytest.mark.parametrize(("case", "bar", "red"), [
    ({}, "gaussian fit", set()),
    ({"unc": (1.1, 10)}, "gaussian fit", {"uncompressed_learns"}),           # above the Gaussian fit
    ({"unc": (1.1, 10)}, "initial", set()),                                  # but below initial / 2
    ({"lw": (0.5, 3)}, "gaussian fit", {"layerwise_qoda_learns"}),           # collapsed to 3 classes
    ({"unc": (2.6, 10)}, "initial", {"uncompressed_learns"}),                # above 5.0 / 2
    ({"refs": {"gaussian fit": 1.0, "real training digits": 0.4, "one class (8)": 20.0, "initial generator": 5.0}},
     "gaussian fit", {"measure_calibrated"}),                                # real digits not 3× below the fit
    ({"refs": {"gaussian fit": 1.0, "real training digits": 0.2, "one class (8)": 2.5, "initial generator": 5.0}},
     "gaussian fit", {"measure_calibrated"}),                                # one class not 3× above it
])  # fmt: skip
def test_learning_and_calibration_verdicts_on_hand_made_runs(case, bar, red):
    from qodasim.experiments import wgan as exp

    _, config = load_config("wgan", "quick")
    config = dict(config, Ks=[4], bar=bar)
    runs, refs = _case(**case)
    stats = {"type_rms": {"0": 1.0, "1": 100.0}}
    verdicts = exp._verdicts(config, runs, refs, stats, wgan("digits", hidden=4, seed=0))
    assert {v.name for v in verdicts if not v.passed} == red


def test_small_setting_runs_and_records_the_calibrated_measures(tmp_path):
    """A short run: the heterogeneity and calibration verdicts pass (too short to learn); the
    references rank real digits < Gaussian fit < one class; every run records the measures; the figure
    is written."""
    from qodasim.experiments import wgan as exp

    result = _run(**SMALL)
    assert {"measure_calibrated", "layer_heterogeneity"} <= _names(result, True)
    refs = result.data["references"]
    assert refs["real training digits"]["frechet"] < refs["gaussian fit"]["frechet"] < refs["one class (8)"]["frechet"]
    assert all(len(r["frechet"]) == len(r["iterations"]) == len(r["coverage"]) for r in result.data["runs"])
    assert [p.suffix for p in exp.plot(result, tmp_path)] == [".png", ".pdf"]


def test_calibration_verdict_goes_red_with_an_untrained_classifier(monkeypatch):
    """The plausible bug: the feature classifier never trained (its random start's features)."""
    import importlib

    from qodasim.vi import digitscore

    wgan_module = importlib.import_module("qodasim.vi.wgan")  # (qodasim.vi.wgan is also the function)

    real = digitscore.train_classifier
    monkeypatch.setattr(digitscore, "train_classifier", lambda X, y, seed=0, **kw: real(X, y, seed=seed, steps=1))
    monkeypatch.setattr(wgan_module, "_SCORERS", {})  # nothing trained before the bug
    assert "measure_calibrated" in _names(_run(**SMALL), False)


@pytest.mark.integration
def test_quick_setting_learns_and_goes_red_when_the_critic_descends(monkeypatch):
    """The quick setting's verdicts pass; with the critic's half of the operator of the wrong sign (the
    critic minimizes what it should maximize) the generator gets no useful signal and neither
    learning verdict passes."""
    result = _run()
    assert result.passed, result.verdicts
    real = WGANProblem._call_field

    def wrong_sign(self, *args):
        out = real(self, *args)
        out[..., self.n_generator :] *= -1.0
        return out

    monkeypatch.setattr(WGANProblem, "_call_field", wrong_sign)
    assert {"uncompressed_learns", "layerwise_qoda_learns"} <= _names(_run(), False)


def test_heterogeneity_verdict_goes_red_when_the_layout_loses_its_types(monkeypatch):
    from qodasim.experiments import wgan as exp
    from qodasim.quantize import LayerLayout

    real_init = WGANProblem.__post_init__

    def one_type(self):
        real_init(self)
        self.layout = LayerLayout(self.layout.sizes, [0] * self.layout.n_layers, names=self.layout.names)

    monkeypatch.setattr(WGANProblem, "__post_init__", one_type)
    _, config = load_config("wgan", "quick")
    result = exp.run(dict(config, **SMALL), progress=False)
    assert "layer_heterogeneity" in _names(result, False)


def test_without_jax_the_experiment_is_skipped_and_says_so(monkeypatch, tmp_path):
    from qodasim.cli import _summary
    from qodasim.experiments import wgan as exp

    monkeypatch.setattr(exp, "jax_available", lambda: False)
    _, config = load_config("wgan", "quick")
    result = exp.run(config, progress=False)
    assert result.verdicts == [] and "jax" in result.meta["skipped"]
    assert exp.plot(result, tmp_path) == []
    assert "| wgan | SKIP |" in _summary([result])
