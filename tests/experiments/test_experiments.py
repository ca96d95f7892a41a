"""Each experiment's verdicts on its quick settings (numerical regression of the theory's predictions)."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim.experiments import REGISTRY, get, load_config

#: Experiments whose quick setting takes most of a minute or more: their verdicts run in ``-m slow`` here (and in
#: CI's ``qodasim reproduce --quick``); the tests that break their verdicts run smaller settings by default.
SLOW_QUICK = {"wgan", "convergence", "equalbits", "dqsgd", "realnets"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_QUICK else n for n in sorted(REGISTRY)]
)
def test_quick_experiment_verdicts_pass(name, tmp_path):
    exp_name, config = load_config(name, "quick")
    assert exp_name == name
    result = get(name).run(config, progress=False)
    failed = [v for v in result.verdicts if not v.passed]
    assert not failed, failed
    assert result.meta["seed"] == config.get("seed", 0) and "numpy" in result.meta


def test_mqv_verdict_fails_when_levels_are_not_optimized(monkeypatch):
    """The MQV verdict can fail: with a broken per-type optimizer (uniform levels) layer-wise loses."""
    from qodasim.experiments import mqv
    from qodasim.levels import Levels
    from qodasim.optimize import layerwise as lw
    from qodasim.optimize.levels import LevelResult

    real = lw.optimize_levels

    def broken(samples, alpha, method="exact", **kw):
        if len(samples) < 30000:  # per-type calls get uniform levels; the global call stays exact
            return LevelResult(Levels.uniform(alpha + 1), 0.0, "broken")
        return real(samples, alpha, method, **kw)

    monkeypatch.setattr(lw, "optimize_levels", broken)
    _, config = load_config("mqv", "quick")
    result = mqv.run(config, progress=False)
    assert "gain_at_equal_width" in {v.name for v in result.verdicts if not v.passed}


def test_slope_verdict_fails_when_the_solver_is_broken(monkeypatch):
    """Break the oracle (a constant bias: no longer unbiased) and the convergence verdicts go red."""
    from qodasim.experiments import convergence
    from qodasim.vi.noise import NoiseModel

    real = NoiseModel.sample

    def biased(self, A, K, seed, call):
        return real(self, A, K, seed, call) + 0.3

    monkeypatch.setattr(NoiseModel, "sample", biased)
    _, config = load_config("convergence", "quick")
    config = dict(config, T=1000, replicas=2, K_scaling=[1, 4], T_scaling=200)
    result = convergence.run(config, progress=False)
    failed = {v.name for v in result.verdicts if not v.passed}
    assert {"qoda_absolute_slope", "qoda_relative_slope", "qoda_heavy_tailed_slope"} <= failed


def test_separation_verdict_fails_when_the_step_ignores_p_gamma(monkeypatch):
    """The plausible bug: learning-rate separation silently not applied (``γ_t = η_t``).  Both relative
    runs are then the same run, so the separated slope's interval cannot lie below the plain one."""
    from qodasim.experiments import convergence
    from qodasim.solvers.steps import AdaptiveStep

    def same(self, acc):
        eta = self.c * (1.0 + acc) ** -self.p_eta
        return eta, eta

    monkeypatch.setattr(AdaptiveStep, "steps", same)
    _, config = load_config("convergence", "quick")
    config = dict(config, T=600, replicas=3, K_scaling=[1, 2], T_scaling=100, bootstrap=50)
    result = convergence.run(config, progress=False)
    failed = {v.name for v in result.verdicts if not v.passed}
    assert "separation_speeds_relative_rate" in failed


def test_slope_interval_brackets_the_fit_and_is_zero_width_for_identical_replicas():
    from qodasim.experiments.convergence import fit_slope, slope_ci

    it = np.arange(1, 101)
    g = np.vstack([it**-1.0, it**-1.0])
    lo, hi = slope_ci(it, g, n_boot=30)
    assert lo == hi == pytest.approx(fit_slope(it, g.mean(axis=0)), abs=1e-12)
    rng = np.random.default_rng(1)
    g = it**-0.5 * np.exp(0.1 * rng.standard_normal((8, it.size)))
    lo, hi = slope_ci(it, g, n_boot=200)
    assert lo < fit_slope(it, g.mean(axis=0)) < hi


@pytest.mark.slow
@pytest.mark.parametrize("name", ["variance", "codelength", "mqv"])
def test_full_experiment_verdicts_pass(name):
    _, config = load_config(name, "full")
    result = get(name).run(config, progress=False)
    assert result.passed, [v for v in result.verdicts if not v.passed]


@pytest.mark.integration
def test_importing_the_experiments_leaves_the_matplotlib_backend_alone():
    """A notebook that imports an experiment keeps its inline plots (the docs gallery relies on it):
    the plotting module draws on ``Figure`` objects and never calls ``matplotlib.use``."""
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import qodasim.experiments.convergence; "
            "from qodasim.experiments import plotting; fig, ax = plotting.figure(); "
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_epsilon_verdicts_go_red_when_the_quantizer_ignores_its_level_count(monkeypatch):
    """The plausible bug: every ``uniform:s`` spec quantized with 16 levels — no ε_Q dependence left."""
    from qodasim.experiments import epsilon
    from qodasim.levels import Levels
    from qodasim.solvers import genx

    class Fixed:
        @staticmethod
        def parse(spec):
            return Levels.uniform(16)

    monkeypatch.setattr(genx, "Levels", Fixed)
    _, config = load_config("epsilon", "quick")
    result = epsilon.run(dict(config, T=400, replicas=3), progress=False)
    failed = {v.name for v in result.verdicts if not v.passed}
    assert {"gap_ratio_decreases_in_s", "small_s_costs"} <= failed


def test_fit_slope_refuses_non_positive_gaps():
    """fit_slope silently dropped gaps ≤ 0, which hid the negative restricted gaps."""
    from qodasim.experiments.convergence import fit_slope

    it = np.round(np.geomspace(1, 10000, 20))
    assert np.isclose(fit_slope(it, it**-0.5), -0.5)
    gaps = it**-0.5
    gaps[-5] = -0.59
    with pytest.raises(ValueError, match="<= 0"):
        fit_slope(it, gaps)
