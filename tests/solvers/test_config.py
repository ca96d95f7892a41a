"""Solver configuration: refusals with a named argument, memory estimates, overflow ending as diverged, results
compared by value."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from qodasim import Key, Levels, Quantizer
from qodasim.solvers import SolverConfig, SolverError, solve
from qodasim.vi import AffineProblem, NoiseModel, bilinear_game


def test_solver_overflow_ends_as_diverged(run_solver):
    """A(x) = 1e200(x − 1) returned status 'ok' with x_last = x0; eg with step 1e200, noise 1e200 or no
    threshold ended in a quantizer ValueError; bilinear_game(3, scale=1e155) died in scipy."""
    p = AffineProblem((1e200 * np.eye(3),), -1e200 * np.ones(3))
    res = run_solver(p, T=20)
    assert res.status == "diverged" and "overflow" in res.message
    for kw in (dict(step=1e200), dict(noise=NoiseModel("absolute", sigma=1e200)),
               dict(step=1e200, divergence_threshold=np.inf)):  # fmt: skip
        res = run_solver(bilinear_game(3), method="eg", compression="global", T=30, **kw)
        assert res.status == "diverged" and res.message, kw
        assert np.all(np.isfinite(res.x_avg))
    res = run_solver(bilinear_game(3, scale=1e155), T=30)
    assert res.status in ("ok", "diverged") and res.message if res.status == "diverged" else True
    res = run_solver(bilinear_game(3, scale=1e100), T=30)
    assert res.status == "ok" and np.all(np.isfinite(res.measures["gap_avg"]))
    for thr in (np.nan, -1.0, 0.0, "big"):
        with pytest.raises(SolverError, match="divergence_threshold"):
            SolverConfig(divergence_threshold=thr)


def test_silent_acceptances_are_clear_errors():
    """Inputs that were accepted silently: each is now an error naming its argument."""
    from qodasim.optimize import optimize_layerwise
    from qodasim.quantize import dequantize_batch
    from qodasim.solvers import SolverConfig, SolverError

    for seed in (2**64 + 5, -1, 1.5, True):
        with pytest.raises(SolverError, match="seed"):
            SolverConfig(seed=seed)
    SolverConfig(seed=2**64 - 1)  # the largest Key seed
    for r in (0, -1.0, float("inf"), "x", True):
        with pytest.raises(SolverError, match="gap_radius"):
            SolverConfig(gap_radius=r)
    qv = Quantizer(Levels.uniform(3)).quantize(np.array([1.0, -2.0]), Key(0))
    for dt in (int, np.int8, "complex128", "nonsense"):
        with pytest.raises(TypeError, match="dtype"):
            qv.dequantize(dtype=dt)
        with pytest.raises(TypeError, match="dtype"):
            dequantize_batch([qv, qv], dtype=dt)
    assert qv.dequantize(np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="overflows"):
        optimize_layerwise([np.full(10, 1e308)], [0], 2)


def test_a_run_too_large_for_memory_is_refused_at_once(run_solver, monkeypatch):
    """T, K or replicas of 10^9 are refused in one line before anything is allocated (not a
    MemoryError after minutes); the estimate names what drives it; ``record`` above T is capped."""
    from qodasim import _memory
    from qodasim.solvers import genx

    est = genx.memory_estimate(8, SolverConfig(method="qgenx", K=4, T=100, replicas=3))
    assert est["ledger"] == 4 * 100 * 2 * genx.LEDGER_ROW_BYTES  # Q-GenX: two messages per iteration
    assert est["arrays"] == 8 * (3 * 3 * 4 * 8 + 8 * 3 * 8 + 3 * 100)
    with monkeypatch.context() as m:  # a machine just too small for this run
        m.setattr(_memory, "available_memory", lambda: est["total"] - 1)
        with pytest.raises(SolverError, match="lower T, K or replicas"):
            run_solver(bilinear_game(8, seed=0), method="qgenx", K=4, T=100, replicas=3)
        m.setattr(_memory, "available_memory", lambda: None)  # unknown: not checked
        assert run_solver(bilinear_game(8, seed=0), method="qgenx", K=4, T=100, replicas=3).status == "ok"
    p = bilinear_game(4, seed=0)
    for kw, what in (({"T": 10**9}, "ledger"), ({"K": 10**9, "T": 10}, "ledger"),
                     ({"replicas": 10**9, "T": 10}, "channels")):  # fmt: skip
        t0 = time.perf_counter()
        with pytest.raises(SolverError, match="GiB available") as err:
            run_solver(p, **{"K": 2, **kw})
        assert time.perf_counter() - t0 < 5 and ("ledger" in str(err.value)) == (what == "ledger")
    assert run_solver(p, K=2, T=10, record=10**9).status == "ok"
    pts = genx.record_points(10, 10**9)
    assert pts[-1] == 10 and pts.size <= 10 and np.all(np.diff(pts) > 0)


def test_solver_results_compare_by_value(tmp_path):
    """``SolverResult == SolverResult`` compares the runs (arrays element-wise, NaN equal to NaN, ledgers
    row by row, the wall time left out), never raises; another seed is another run."""
    from qodasim.solvers.genx import SolverResult

    cfg = SolverConfig(K=2, T=6, compression="global", levels="uniform:3")
    a, b = solve(bilinear_game(4, seed=0), cfg), solve(bilinear_game(4, seed=0), cfg)
    assert a == b and not (a != b)
    assert a != solve(bilinear_game(4, seed=0), dataclasses.replace(cfg, seed=1))
    assert (a == 1) is False and a != "x"
    a2, b2 = SolverResult.load(a.save(tmp_path / "a")), SolverResult.load(b.save(tmp_path / "b"))
    assert a2 == b2  # loaded runs (their x_avg, x_last and quantizer are not saved)
    b2.measures["gap_avg"][0, 0] += 1e-12
    assert a2 != b2
    with pytest.raises(TypeError):
        hash(a)


@pytest.mark.parametrize("sigma", ["x", None, [1.0], True, float("nan"), -1.0])
def test_a_noise_level_that_is_not_a_number_is_named(sigma):
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        NoiseModel("absolute", sigma)


def test_solver_config_must_be_a_config():
    with pytest.raises(SolverError, match="config"):
        solve(bilinear_game(2), {"method": "qoda"})
