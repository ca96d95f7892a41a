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
    assert set(a.measures) == {"opnorm_avg", "opnorm_last", "energy_avg", "energy_last"}
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


SMALL = dict(T=120, Ks=[2], record=4, hidden=16)


def test_quick_wgan_verdicts_pass_on_a_small_setting():
    from qodasim.experiments import wgan as exp

    _, config = load_config("wgan", "quick")
    result = exp.run(dict(config, **SMALL), progress=False)
    assert result.passed, result.verdicts


def test_improvement_verdicts_go_red_when_the_critic_descends(monkeypatch):
    """The plausible bug: the critic's half of the operator with the wrong sign (the critic minimizes
    what it should maximize), so the generator gets no useful signal."""
    from qodasim.experiments import wgan as exp

    real = WGANProblem._call_field

    def wrong_sign(self, *args):
        out = real(self, *args)
        out[..., self.n_generator :] *= -1.0
        return out

    monkeypatch.setattr(WGANProblem, "_call_field", wrong_sign)
    _, config = load_config("wgan", "quick")
    result = exp.run(dict(config, **SMALL), progress=False)
    failed = {v.name for v in result.verdicts if not v.passed}
    assert {"uncompressed_improves", "layerwise_qoda_improves"} <= failed


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
    assert "layer_heterogeneity" in {v.name for v in result.verdicts if not v.passed}


def test_without_jax_the_experiment_is_skipped_and_says_so(monkeypatch, tmp_path):
    from qodasim.cli import _summary
    from qodasim.experiments import wgan as exp

    monkeypatch.setattr(exp, "jax_available", lambda: False)
    _, config = load_config("wgan", "quick")
    result = exp.run(config, progress=False)
    assert result.verdicts == [] and "jax" in result.meta["skipped"]
    assert exp.plot(result, tmp_path) == []
    assert "| wgan | SKIP |" in _summary([result])
