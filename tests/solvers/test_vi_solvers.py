"""Problems, oracles, measures and the K-worker solvers (THEORY §5–6)."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim.solvers import SolverConfig, SolverError, SolverResult, solve
from qodasim.vi import (
    AffineProblem,
    KellyAuction,
    MatrixGame,
    NoiseModel,
    RestrictedGap,
    affine_monotone,
    bilinear_game,
    covariance_gan,
    layered_problem,
    strongly_monotone_quadratic,
)

PROBLEMS = {
    "bilinear": lambda: bilinear_game(6, seed=1),
    "affine": lambda: affine_monotone(12, mu=0.1, L=2.0, seed=2),
    "quadratic": lambda: strongly_monotone_quadratic(5, mu=0.2, seed=3),
    "gan": lambda: covariance_gan(3, seed=4),
    "layered": lambda: layered_problem([5, 20, 3], [1.0, 0.01, 30.0], types=[0, 1, 2], seed=5),
    "kelly": lambda: KellyAuction(),
    "matrix": lambda: MatrixGame.random(4, 5, seed=6),
}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_operators_are_monotone(name):
    p = PROBLEMS[name]()
    rng = np.random.default_rng(0)
    X = p.project(rng.standard_normal((200, p.d)) + p.x0())
    Y = p.project(rng.standard_normal((200, p.d)) + p.x0())
    inner = np.sum((p.operator(X) - p.operator(Y)) * (X - Y), axis=1)
    assert np.all(inner >= -1e-10 * np.maximum(1.0, np.abs(inner).max()))
    assert p.layout.d == p.d


@pytest.mark.parametrize("name", ["bilinear", "affine", "quadratic", "gan", "layered", "kelly"])
def test_solutions_satisfy_the_vi(name):
    p = PROBLEMS[name]()
    xs = p.solution
    rng = np.random.default_rng(1)
    X = p.project(rng.standard_normal((300, p.d)) * 3 + xs)
    # ⟨A(x*), x − x*⟩ ≥ 0 for feasible x (= 0 for unconstrained problems with A(x*) = 0)
    assert np.all((X - xs) @ p(xs) >= -1e-9)
    if not isinstance(p, KellyAuction):
        assert np.linalg.norm(p(xs)) < 1e-9
    if name == "gan":
        m = p.d // 2
        iu = np.triu_indices(3)
        assert np.allclose(xs[:m], p.Sigma[iu] * np.where(iu[0] == iu[1], 1, np.sqrt(2))) and np.allclose(xs[m:], 0)


def test_kelly_equilibrium_matches_theory(run_solver):
    assert np.allclose(KellyAuction().solution, [0.1396, 0.7094], atol=1e-4)
    res = run_solver(KellyAuction(), method="qoda", T=3000)
    assert np.allclose(res.x_last[0], [0.1396, 0.7094], atol=2e-3)


def test_restricted_gap_properties_and_cvxpy_cross_check():
    import cvxpy as cp

    p = strongly_monotone_quadratic(4, mu=0.3, seed=7)
    xs = p.solution
    c, r = p.x0(), float(np.linalg.norm(p.x0() - xs)) + 1.0
    gap = RestrictedGap(p, c, r)
    rng = np.random.default_rng(2)
    Xh = xs + rng.standard_normal((5, p.d))
    g = gap(Xh)
    assert np.all(g >= 0) and abs(gap(xs[None])[0]) < 1e-9
    M = p.blocks[0]
    for i in range(Xh.shape[0]):
        x = cp.Variable(p.d)
        obj = cp.Maximize((M.T @ Xh[i] - p.b) @ x + p.b @ Xh[i] - cp.quad_form(x, (M + M.T) / 2))
        cp.Problem(obj, [cp.norm(x - c) <= r]).solve(solver=cp.CLARABEL)
        assert np.isclose(g[i], obj.value, rtol=1e-5, atol=1e-7)
    # bilinear (S = 0): the sup is linear, on the boundary
    pb = bilinear_game(3, seed=8)
    gb = RestrictedGap(pb, pb.x0(), 5.0)
    assert gb(pb.solution[None])[0] < 1e-9 and np.all(gb(rng.standard_normal((4, pb.d))) > 0)


def test_matrix_game_duality_gap(run_solver):
    g = MatrixGame(np.array([[0.0, 1.0], [1.0, 0.0]]))  # matching pennies variant: value 1/2 at (1/2, 1/2)
    assert np.isclose(g.duality_gap(np.array([0.5, 0.5, 0.5, 0.5]))[0], 0.0)
    assert g.duality_gap(np.array([1.0, 0.0, 0.5, 0.5]))[0] > 0.4
    res = run_solver(MatrixGame.random(5, 5, seed=1), method="qoda", T=3000)
    assert res.measures["gap_avg"][0, -1] < 0.05


# ----------------------------------------------------------------------------------- solvers
def test_qoda_qgenx_converge_where_gda_diverges(run_solver):
    p = bilinear_game(6, seed=1)
    d0 = np.linalg.norm(p.x0() - p.solution)
    for method in ("qoda", "qgenx", "eg", "popov"):
        res = run_solver(p, method=method, T=3000)
        assert res.status == "ok"
        assert res.measures["gap_avg"][0, -1] < 0.02 * res.measures["gap_avg"][0, 0]
    gda = run_solver(p, method="gda", T=3000, step=0.1)
    assert gda.diverged or gda.measures["dist_last"][0, -1] > 10 * d0
    gda_long = run_solver(p, method="gda", T=20000, step=0.5)
    assert gda_long.diverged and "diverged" in gda_long.message
    assert not np.any(np.isnan(gda_long.measures["gap_avg"]))  # diverged runs report no NaN figures


def test_message_counts_from_the_ledger(run_solver):
    p = layered_problem([5, 9], [1.0, 0.1], types=[0, 1], seed=2)
    for method, per_iter in (("qoda", 1), ("qgenx", 2), ("eg", 2), ("popov", 1), ("gda", 1), ("da", 1)):
        res = run_solver(p, method=method, T=20, K=3, compression="layerwise", levels=("uniform:3", "uniform:7"))
        assert np.all(res.messages_per_worker == per_iter * 20)
        assert all(res.ledger.messages(worker=k) == per_iter * 20 for k in range(3))
        assert res.ledger.total() == res.bits_per_iteration[0].sum()


def test_k1_uncompressed_equals_deterministic_method_exactly(run_solver):
    """K = 1, no noise, no compression: the solver is the deterministic recurrence, bit for bit."""
    p = affine_monotone(8, mu=0.0, seed=3)
    T = 50
    res = run_solver(p, method="qoda", T=T, record=T)
    X1 = p.x0()
    X, Y, Vprev, s, xsum = X1.copy(), np.zeros(p.d), np.zeros(p.d), 0.0, np.zeros(p.d)
    for _ in range(T):
        eta = 1.0 / np.sqrt(1.0 + s)
        Xh = X - eta * Vprev
        Vh = p.operator(Xh[None])[0]
        Y -= Vh
        s += np.sum((Vh - Vprev) ** 2)
        Vprev = Vh
        X = X1 + (1.0 / np.sqrt(1.0 + s)) * Y
        xsum += Xh
    assert np.array_equal(res.x_last[0], X) and np.array_equal(res.x_avg[0], xsum / T)
    # and K = 4 without noise or compression gives the same iterates (the mean of equal vectors)
    res4 = run_solver(p, method="qoda", T=T, K=4)
    assert np.allclose(res4.x_last[0], X, rtol=1e-13, atol=1e-13)


def test_replicas_are_independent_runs_and_reproducible():
    p = bilinear_game(4, seed=2)
    cfg = SolverConfig(method="qoda", T=100, K=2, compression="global", levels="uniform:3",
                       noise=NoiseModel("absolute", 0.5), replicas=3, seed=7)  # fmt: skip
    a, b = solve(p, cfg), solve(p, cfg)
    assert np.array_equal(a.x_last, b.x_last) and np.array_equal(a.bits_per_iteration, b.bits_per_iteration)
    assert not np.allclose(a.x_last[0], a.x_last[1])


@pytest.mark.parametrize("compression", ["global", "layerwise"])
def test_aggregation_in_one_pass_changes_no_iterate(monkeypatch, compression):
    """The solver sums the workers' messages with ``dequantize_sum`` (no ``(R, K, d)`` array); every
    iterate is bit for bit what the dequantized workers added in order give (the former path)."""
    from qodasim.quantize import dequantize_batch
    from qodasim.quantize.device import worker_sums
    from qodasim.solvers import genx

    p = layered_problem([30, 70, 9], [1.0, 0.02, 5.0], types=[0, 1, 0], seed=8)
    levels = "exponential:6" if compression == "global" else ("uniform:7", "exponential:4")
    cfg = SolverConfig(method="qoda", T=60, K=5, compression=compression, levels=levels, replicas=2,
                       noise=NoiseModel("absolute", 0.4), seed=3)  # fmt: skip
    fused = solve(p, cfg)

    def composed(qvs, K, engine="numba"):
        D = dequantize_batch(qvs, engine=engine)
        return worker_sums(D.reshape(len(qvs) // K, K, D.shape[-1]))

    monkeypatch.setattr(genx, "dequantize_sum", composed)
    ref = solve(p, cfg)
    assert np.array_equal(fused.x_last, ref.x_last) and np.array_equal(fused.x_avg, ref.x_avg)
    assert np.array_equal(fused.bits_per_iteration, ref.bits_per_iteration)


def test_bits_expected_vs_stream_agree_on_average(run_solver):
    """The exact expected length and real streams agree: over 300 messages the mean difference is
    within 6 standard errors of the per-message stream length."""
    p = layered_problem([50, 80], [1.0, 0.05], types=[0, 1], seed=4)
    common = dict(method="qoda", T=150, K=2, compression="layerwise", levels=("uniform:7", "exponential:4"),
                  noise=NoiseModel("absolute", 0.3), seed=1)  # fmt: skip
    s = run_solver(p, bits="stream", **common)
    e = run_solver(p, bits="expected", **common)
    assert np.array_equal(s.x_last, e.x_last)  # counting bits does not change the run
    diff = s.bits_per_iteration[0] - e.bits_per_iteration[0]
    from qodasim.quantize.check import mc_mean_check

    assert mc_mean_check(diff, 0.0, None, 1e-9)[0] < 6  # never a division by a zero standard error


def test_level_reoptimization_sends_new_tables(run_solver):
    p = layered_problem([40, 60], [1.0, 0.01], types=[0, 1], seed=5)
    res = run_solver(
        p,
        method="qoda",
        T=60,
        K=2,
        compression="layerwise",
        levels=("uniform:7", "uniform:7"),
        noise=NoiseModel("absolute", 0.1),
        reoptimize_every=20,
    )
    tables = [row[3] for row in res.ledger.table()]
    # tables in the first message of each worker, then again after each re-optimization (3 times)
    assert sum(t > 0 for t in tables) >= 2 + 2 * 2
    assert res.status == "ok"


def test_result_save_load_roundtrip(run_solver, tmp_path):
    p = bilinear_game(3)
    res = run_solver(p, method="qgenx", T=30, compression="global", levels="uniform:3")
    back = SolverResult.load(res.save(tmp_path / "run"))
    assert np.array_equal(back.iterations, res.iterations)
    assert all(np.array_equal(back.measures[k], res.measures[k], equal_nan=True) for k in res.measures)
    assert back.config == res.config and back.ledger.total() == res.ledger.total()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(K=0), "K must"),
        (dict(T=-1), "T must"),
        (dict(method="adam"), "method"),
        (dict(step=-0.1), "step"),
        (dict(step="fast"), "step"),
        (dict(compression="zip"), "compression"),
        (dict(bits="some"), "bits"),
        (dict(replicas=0), "replicas"),
    ],
)
def test_bad_configs(kwargs, words):
    with pytest.raises(SolverError, match=words):
        SolverConfig(**kwargs)


def test_bad_runs(run_solver):
    p = layered_problem([3, 4], [1, 1], types=[0, 1])
    with pytest.raises(SolverError, match="specs"):
        run_solver(p, compression="layerwise", levels=("uniform:3",) * 3, T=2)
    with pytest.raises(SolverError, match="Problem"):
        run_solver(np.eye(3))

    class Broken(AffineProblem):
        def operator(self, X):
            out = super().operator(X)
            out[:, 0] = np.nan
            return out

    b = Broken((np.eye(2),), np.ones(2))
    with pytest.raises(SolverError, match="non-finite"):
        run_solver(b, T=3)
    with pytest.raises(ValueError, match="not monotone"):
        AffineProblem((-np.eye(2),), np.zeros(2))
    with pytest.raises(ValueError):
        NoiseModel("loud")


def test_finite_sum_oracle_is_unbiased_and_solver_learns_the_covariance(run_solver):
    p = covariance_gan(3, seed=4)
    X = p.x0()[None, :] + 0.3
    rng = np.random.default_rng(0)
    V = p.sample_operator(X, 4000, 8, rng)[0]
    mean, se = V.mean(axis=0), V.std(axis=0, ddof=1) / np.sqrt(V.shape[0])
    exact = p.operator(X)[0]
    assert np.all(np.abs(mean - exact) < 6 * se + 1e-12)  # 6 standard errors per coordinate
    res = run_solver(
        p,
        method="qoda",
        T=3000,
        K=4,
        noise=NoiseModel("finite_sum", batch=16),
        compression="layerwise",
        levels=("uniform:15",),
    )
    assert res.status == "ok"
    assert res.measures["dist_avg"][0, -1] < 0.25 * res.measures["dist_avg"][0, 0]
    with pytest.raises(ValueError, match="finite-sum"):
        run_solver(bilinear_game(3), T=2, noise=NoiseModel("finite_sum"))


def test_convex_solve_fallback_and_inaccurate_handling(monkeypatch):
    import warnings

    import cvxpy as cp

    from qodasim.optimize import SolverError as ConvexError
    from qodasim.optimize import solve as cvx_solve

    x = cp.Variable()
    prob = cp.Problem(cp.Minimize(cp.square(x - 1)), [x >= 0])
    assert cvx_solve(prob).status == cp.OPTIMAL and np.isclose(x.value, 1.0, atol=1e-6)
    calls = []

    def fake_solve(self, solver=None, **kw):  # Clarabel "fails", SCS returns an inaccurate answer
        calls.append(solver)
        if solver == cp.CLARABEL:
            raise cp.error.SolverError("boom")
        x.value = 1.0
        self._status = cp.OPTIMAL_INACCURATE
        return 0.0

    monkeypatch.setattr(cp.Problem, "solve", fake_solve)
    monkeypatch.setattr(cp.Problem, "status", property(lambda self: self._status))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cvx_solve(prob)
    assert calls == [cp.CLARABEL, cp.SCS] and any("inaccurate" in str(w.message) for w in caught)
    x.value = -5.0  # now the inaccurate answer violates x >= 0: rejected

    def bad_solve(self, solver=None, **kw):
        self._status = cp.OPTIMAL_INACCURATE
        return 0.0

    monkeypatch.setattr(cp.Problem, "solve", bad_solve)
    with pytest.raises(ConvexError, match="violation"):
        cvx_solve(prob)


def test_student_t_noise_has_the_absolute_noise_variance_and_heavy_tails():
    """E‖U‖² = σ² (ν = 6, where the fourth moment is finite: tolerance 5 standard errors of the mean
    from the sample); excess kurtosis 6/(ν − 4) = 3 (loose: it is estimated from heavy tails)."""
    from qodasim.vi import NoiseModel, bilinear_game

    p = bilinear_game(4)
    X = np.zeros((1, p.d))
    n = NoiseModel("student_t", sigma=2.0, dof=6.0)
    U = n.sample_at(p, X, 20_000, 3, 0)[0] - p.operator(X)[0]
    sq = (U**2).sum(axis=1)
    assert abs(sq.mean() - 4.0) <= 5 * sq.std(ddof=1) / np.sqrt(sq.size)
    u = U.ravel() / U.std()
    assert 1.5 < np.mean(u**4) - 3 < 6
    assert np.array_equal(n.sample_worker(p, X, 7, 3, 0), n.sample_at(p, X, 9, 3, 0)[:, 7])


@pytest.mark.parametrize("dof", [2.0, 1.5, float("inf"), True])
def test_student_t_needs_finite_variance(dof):
    from qodasim.vi import NoiseModel

    with pytest.raises(ValueError, match="dof"):
        NoiseModel("student_t", sigma=1.0, dof=dof)
