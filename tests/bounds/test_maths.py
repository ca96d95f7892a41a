"""Issue 12 — correct maths: step rules, the restricted gap's hard case, Kelly equilibria, L-GreCo,
DQ-SGD, and tests aimed at mutations that left the older suite green."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim.optimize.allocation import dq_sgd_schedule, lgreco, lgreco_brute_force
from qodasim.solvers import AdaptiveStep, ConstantStep, SolverConfig, SolverError, solve, step_rule
from qodasim.solvers.genx import _measure_fns
from qodasim.vi import AffineProblem, NoiseModel, affine_monotone, bilinear_game, layered_problem
from qodasim.vi.gaps import RestrictedGap, _trust_region_max
from qodasim.vi.problems import KellyAuction


# ------------------------------------------------------------------------------ step rules
def _reference(p, method: str, T: int):
    """The deterministic recurrences of THEORY §6 written out (K = 1, no noise, no compression)."""
    X1 = p.x0()
    X, Y, Vprev, s, xsum = X1.copy(), np.zeros(p.d), np.zeros(p.d), 0.0, np.zeros(p.d)
    A = lambda x: p.operator(x[None])[0]  # noqa: E731
    for _ in range(T):
        eta = 1.0 / np.sqrt(1.0 + s)
        lead = {"qoda": Vprev, "qgenx": A(X), "da": np.zeros(p.d)}[method]
        Xh = X - eta * lead
        Vh = A(Xh)
        Y -= Vh
        s += np.sum((Vh - lead) ** 2)  # Q-GenX: V(X_{t+1/2}) − V(X_t); DA: V(X_{t+1/2}); QODA: − V_{t−1/2}
        Vprev = Vh
        X = X1 + (1.0 / np.sqrt(1.0 + s)) * Y
        xsum += Xh
    return X, xsum / T


@pytest.mark.parametrize("method", ["qgenx", "da", "qoda"])
def test_each_method_accumulates_its_own_difference(method):
    """Q-GenX used ‖V̂_{t+1/2} − V̂_{t−1/2}‖² (QODA's difference) and DA too; THEORY §6 corrected."""
    p = affine_monotone(8, mu=0.0, seed=3)
    res = solve(p, SolverConfig(method=method, T=60, record=60))
    X, xavg = _reference(p, method, 60)
    assert np.array_equal(res.x_last[0], X) and np.array_equal(res.x_avg[0], xavg)


def test_qgenx_is_not_qoda_with_a_wasted_message():
    """Extrapolating with the previous half-step's vector would make Q-GenX QODA plus a message."""
    p = affine_monotone(8, mu=0.0, seed=3)
    a = solve(p, SolverConfig(method="qgenx", T=40))
    b = solve(p, SolverConfig(method="qoda", T=40))
    assert not np.allclose(a.x_last, b.x_last)
    assert np.all(a.messages_per_worker == 80) and np.all(b.messages_per_worker == 40)


def test_step_rules_formulas_and_configs():
    rule = AdaptiveStep(c=2.0, p_eta=0.5, p_gamma=0.25)
    gamma, eta = rule.steps(np.array([3.0, 15.0]))
    assert np.allclose(gamma, 2.0 * np.array([4.0, 16.0]) ** -0.25) and np.allclose(eta, 2.0 / np.array([2.0, 4.0]))
    assert np.array_equal(rule.update(np.zeros(2), np.ones((2, 3, 4))), [12.0, 12.0])  # per worker: Σ_k Σ_i
    assert step_rule("adaptive") == AdaptiveStep() and step_rule(0.5) == ConstantStep(0.5)
    assert AdaptiveStep(p_eta=0.0, p_gamma=1.0).steps(np.array([3.0])) == (0.25, 1.0)  # the ends of [0, 1] are allowed
    assert step_rule({"rule": "adaptive", "p_gamma": 0.3}) == AdaptiveStep(p_gamma=0.3)
    cfg = SolverConfig(step={"rule": "adaptive", "c": 0.5, "per_worker": True})
    assert cfg.to_dict()["step"] == {"rule": "adaptive", "c": 0.5, "p_eta": 0.5, "p_gamma": 0.5, "per_worker": True}
    bads = [{"rule": "fancy"}, {"p_eta": 2.0}, {"p_gamma": -0.1}, {"p_eta": "half"}, {"c": -1.0}, {"c": 0.0},
            {"c": "x"}, {"c": float("inf")}, {"per_worker": "yes"}, {"typo": 1}, "fast", -0.1, 0.0, True]  # fmt: skip
    for bad in bads:
        with pytest.raises(SolverError, match="step"):
            SolverConfig(step=bad)
    with pytest.raises(SolverError, match="per-worker"):
        SolverConfig(step=AdaptiveStep(per_worker=True), engine="cuda")


def test_per_worker_differences_by_hand():
    """K = 3 workers with noise, uncompressed: Σ_k ‖δ_k‖² written out equals the solver's run."""
    p = bilinear_game(3, seed=2)
    noise, K, T, seed = NoiseModel("absolute", 0.5), 3, 25, 4
    res = solve(p, SolverConfig(method="qoda", K=K, T=T, noise=noise, seed=seed, step=AdaptiveStep(per_worker=True)))
    X1 = p.x0()
    X, Y, Wprev, s = X1.copy(), np.zeros(p.d), np.zeros((K, p.d)), 0.0
    for t in range(1, T + 1):
        eta = 1.0 / np.sqrt(1.0 + s)
        Xh = X - eta * Wprev.mean(axis=0)
        W = noise.sample_at(p, Xh[None], K, seed, t - 1)[0]
        Y -= W.mean(axis=0)
        s += np.sum((W - Wprev) ** 2)
        Wprev = W
        X = X1 + (1.0 / np.sqrt(1.0 + s)) * Y
    assert np.allclose(res.x_last[0], X, rtol=1e-12, atol=1e-12)
    averaged = solve(p, SolverConfig(method="qoda", K=K, T=T, noise=noise, seed=seed))
    assert not np.allclose(averaged.x_last, res.x_last)
    one = dict(method="qoda", K=1, T=T, noise=noise, seed=seed)
    assert np.array_equal(solve(p, SolverConfig(**one, step=AdaptiveStep(per_worker=True))).x_last,
                          solve(p, SolverConfig(**one)).x_last)  # fmt: skip


def test_learning_rate_separation_runs_and_changes_the_steps():
    p = bilinear_game(4, seed=1)
    base = dict(method="qoda", K=2, T=400, noise=NoiseModel("relative", sigma_rel=0.5), replicas=2)
    a = solve(p, SolverConfig(**base))
    b = solve(p, SolverConfig(**base, step=AdaptiveStep(p_gamma=0.3)))
    assert a.status == b.status == "ok" and not np.allclose(a.x_last, b.x_last)
    assert b.config["step"]["p_gamma"] == 0.3


def test_replicas_have_their_own_noise():
    """Replicas sharing one noise stream would make them identical runs."""
    p = bilinear_game(3, seed=2)
    res = solve(p, SolverConfig(method="qoda", K=2, T=30, replicas=3, noise=NoiseModel("absolute", 1.0)))
    assert not np.allclose(res.x_last[0], res.x_last[1]) and not np.allclose(res.x_last[1], res.x_last[2])


# ------------------------------------------------------------------------------- restricted gap
def _cvxpy_gap(p: AffineProblem, xhat, center, radius) -> float:
    import cvxpy as cp

    M = p.matrix() if hasattr(p, "matrix") else None
    if M is None:
        from scipy.linalg import block_diag

        M = block_diag(*p.blocks)
    x = cp.Variable(p.d)
    S = (M + M.T) / 2
    obj = -cp.quad_form(x, cp.psd_wrap(S)) + x @ (M.T @ xhat - p.b) + p.b @ xhat
    prob = cp.Problem(cp.Maximize(obj), [cp.norm(x - center) <= radius])
    prob.solve(solver=cp.CLARABEL)
    return float(prob.value)


def test_trust_region_hard_case_against_cvxpy():
    """Singular λ with h nearly orthogonal to its null space: the multiplier is below any bracket."""
    import cvxpy as cp

    rng = np.random.default_rng(0)
    for eps in (0.0, 1e-14, 1e-9, 1e-5, 1e-2):
        lam = np.concatenate([np.zeros(3), rng.uniform(0.5, 2.0, 5)])
        h = np.concatenate([eps * rng.standard_normal(3), rng.standard_normal(5)])
        r = 0.3
        z = cp.Variable(8)
        prob = cp.Problem(cp.Maximize(h @ z - cp.sum(cp.multiply(lam, cp.square(z)))), [cp.norm(z) <= r])
        prob.solve(solver=cp.CLARABEL)
        assert np.isclose(_trust_region_max(lam, h, r), prob.value, rtol=1e-6, atol=1e-8), eps


def test_gap_at_the_solution_is_zero_and_never_negative_along_runs():
    """layered_problem([3, 5, 4]) had gap −11.4 at x*; deterministic QODA on affine(10, mu=0) recorded
    gap_last = −0.59 once ‖x̂ − x*‖ ≲ 1e-9."""
    from qodasim.vi import covariance_gan, strongly_monotone_quadratic

    for p in (layered_problem([3, 5, 4], [1, 1, 1]), layered_problem([3, 5, 4], [10.0, 0.1, 1.0], seed=3),
              affine_monotone(10, mu=0.0), bilinear_game(5, seed=1), affine_monotone(6, mu=0.2, seed=5),
              strongly_monotone_quadratic(4, seed=2), covariance_gan(3, seed=4)):  # fmt: skip
        X1 = p.x0()
        g = RestrictedGap(p, X1, float(np.linalg.norm(X1 - p.solution)) + 1.0)
        scale = 1.0 + float(np.abs(p.b).max()) * (1.0 + float(np.abs(p.solution).max()))
        assert abs(g(p.solution[None])[0]) <= 1e-12 * scale * 100
        res = solve(p, SolverConfig(method="qoda", T=3000, record=60))
        for key in ("gap_avg", "gap_last"):
            assert res.measures[key].min() >= -1e-12 * scale * 100, (p.name, key)


def test_gap_with_a_ball_not_centred_at_zero_against_cvxpy():
    """A centre dropped from the linear term would only show with centre ≠ 0."""
    rng = np.random.default_rng(1)
    for p in (layered_problem([3, 4], [1.0, 2.0], seed=2), affine_monotone(6, mu=0.1, seed=4)):
        for _ in range(3):
            center = rng.standard_normal(p.d)
            xhat = rng.standard_normal(p.d)
            radius = float(rng.uniform(0.5, 3.0))
            got = RestrictedGap(p, center, radius)(xhat[None])[0]
            assert np.isclose(got, _cvxpy_gap(p, xhat, center, radius), rtol=1e-6, atol=1e-7)


def test_solver_ball_holds_the_solution():
    p = bilinear_game(4, seed=3)
    cfg = SolverConfig(method="qoda", T=10)
    gap = _measure_fns(p, cfg, p.x0())["gap"]
    assert isinstance(gap, RestrictedGap) and gap.r > np.linalg.norm(p.x0() - p.solution)
    assert abs(gap(p.solution[None])[0]) < 1e-10


# ------------------------------------------------------------------------------------ Kelly
@pytest.mark.parametrize(
    "G, want", [((1, 3), [0, 0.7320508]), ((1.2, 1.3, 10), [0, 0, 2.1622777]), ((0.5, 4), [0, 1]), ((2, 3), None)]
)
def test_kelly_with_inactive_bidders(G, want):
    x = KellyAuction(G=G).solution
    if want is not None:
        assert np.allclose(x, want, atol=1e-7)
    else:
        assert np.allclose(x, [0.1396, 0.7094], atol=1e-4)


def test_kelly_kkt_on_random_games():
    """20 random games with 2 to 6 bidders, some priced out: x ≥ 0, A(x) ≥ 0, x·A(x) = 0 to 1e-10."""
    rng = np.random.default_rng(2)
    n_inactive = 0
    for _ in range(20):
        n = int(rng.integers(2, 7))
        k = KellyAuction(G=tuple(np.exp(rng.uniform(-1.5, 2.5, n))), Q=float(rng.uniform(0.5, 2)),
                         Z=float(rng.uniform(0.2, 2)))  # fmt: skip
        x = k.solution
        A = k.operator(x[None])[0]
        assert np.all(x >= 0) and np.all(A >= -1e-10) and np.max(np.abs(x * A)) <= 1e-10
        n_inactive += int(np.sum(x == 0))
    assert n_inactive >= 5  # the instances do exercise the active set


# ---------------------------------------------------------------------------------- L-GreCo
def test_lgreco_issue_examples():
    """11 bits where the default costs 3; a raise although the default is feasible."""
    got = lgreco([np.array([9.0, 1.0])] * 3, [np.array([0.0, 1.0])] * 3, [1, 1, 1], 1.0, buckets=1000)
    assert got.tolist() == [1, 1, 1]
    got = lgreco([np.array([5.0, 1.0])] * 2, [np.array([1.0, 2.0])] * 2, [0, 0], 1.0, buckets=3)
    assert got.tolist() == [0, 0]


def test_lgreco_guarantee_against_the_exact_problem():
    """Independent of the discretization code: OPT(budget) ≤ bits ≤ OPT(budget·(1 − L/B)), always feasible."""
    rng = np.random.default_rng(5)
    for _ in range(60):
        L, O, B = int(rng.integers(1, 4)), int(rng.integers(2, 5)), int(rng.integers(20, 400))
        bits = [rng.uniform(0, 20, O) for _ in range(L)]
        errs = [rng.uniform(0.01, 3, O) for _ in range(L)]
        default = rng.integers(0, O, L)
        alpha = float(rng.uniform(1.0, 1.5))
        got = lgreco(bits, errs, default, alpha, B)
        cost = sum(b[o] for b, o in zip(bits, got))
        budget = alpha * sum(e[d] for e, d in zip(errs, default))
        assert sum(e[o] for e, o in zip(errs, got)) <= budget * (1 + 1e-12)
        assert cost >= lgreco_brute_force(bits, errs, default, alpha)[1] - 1e-9
        try:
            assert cost <= lgreco_brute_force(bits, errs, default, alpha * (1 - L / B))[1] + 1e-9
        except ValueError:  # nothing meets the tighter budget
            pass
    for bad in (0, 10**8, True, 2.5):
        with pytest.raises(ValueError, match="buckets"):
            lgreco([np.array([1.0, 2.0])], [np.array([1.0, 0.5])], [0], 1.0, bad)
    for bits, errs in (([np.array([1.0, 2.0])], [np.array([1.0])]), ([np.array([[1.0]])], [np.array([[1.0]])]),
                       ([np.array([])], [np.array([])])):  # fmt: skip
        with pytest.raises(ValueError, match="option"):
            lgreco(bits, errs, [0], 1.0, 10)
    # zero error budget: only error-free options qualify
    assert lgreco([np.array([3.0, 1.0])], [np.array([0.0, 1.0])], [0], 1.0, 10).tolist() == [0]


def test_lgreco_optimal_on_the_discretized_problem_and_never_worse_than_default():
    rng = np.random.default_rng(3)
    for _ in range(200):
        L, O, B = int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 60))
        bits = [rng.integers(0, 20, O).astype(float) for _ in range(L)]
        errs = [rng.uniform(0, 3, O) * (rng.random(O) < 0.9) for _ in range(L)]
        default = rng.integers(0, O, L)
        alpha = float(rng.choice([0.7, 1.0, 1.5]))
        try:
            ref = lgreco_brute_force(bits, errs, default, alpha, buckets=B)
        except ValueError:
            with pytest.raises(ValueError):
                lgreco(bits, errs, default, alpha, B)
            continue
        got = lgreco(bits, errs, default, alpha, B)
        cost = sum(b[o] for b, o in zip(bits, got))
        assert cost == ref[1]
        budget = alpha * sum(e[d] for e, d in zip(errs, default))
        assert sum(e[o] for e, o in zip(errs, got)) <= budget * (1 + 1e-12)
        if alpha >= 1:
            assert cost <= sum(b[d] for b, d in zip(bits, default))


# ---------------------------------------------------------------------------------- DQ-SGD
def test_dq_sgd_respects_at_least_one_interval():
    g = np.array([0.01, 0.02, 5.0, 6.0, 0.03])
    rho, d, budget = 0.95, 100, 40.0
    s = dq_sgd_schedule(g, rho, d, budget)
    assert np.all(s >= 1.0)
    a = rho ** (g.size - 1 - np.arange(g.size)) * d / 4 * g * g
    assert np.isclose(np.sum(a / s**2), budget)
    free = s > 1.0
    assert free.sum() >= 1 and (~free).sum() >= 1
    ratio = s[free] ** 2 / a[free]
    assert np.allclose(ratio, ratio[0])  # KKT on the unclipped steps
    from scipy.optimize import minimize

    cons = {"type": "ineq", "fun": lambda x: budget - np.sum(a / np.exp(2 * x))}
    ref = minimize(lambda x: np.sum(x), np.log(s) + 0.1, constraints=[cons], bounds=[(0, None)] * g.size,
                   method="SLSQP", options={"ftol": 1e-12, "maxiter": 500})  # fmt: skip
    assert np.sum(np.log(s)) <= ref.fun + 1e-6
    assert np.all(dq_sgd_schedule(g, rho, d, 1e9) == 1.0)  # a loose budget: one interval everywhere
    for bad in ([1.0, 0.0], [1.0, -2.0], [np.nan], []):
        with pytest.raises(ValueError, match="grad_norms"):
            dq_sgd_schedule(bad, rho, d, budget)
    assert dq_sgd_schedule([0.5, 0.25], 1.0, 10, 0.1).min() > 1.0  # gradients below 1 are fine
    for bad_rho in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="rho"):
            dq_sgd_schedule(g, bad_rho, d, budget)


# ------------------------------------------------------------------------- truncated normal
def _psi_by_quadrature(levels, mu: float, sigma: float) -> float:
    """Ψ = Σ_j ∫ (ℓ_{j+1} − r)(r − ℓ_j) f(r) dr with scipy's adaptive quadrature, the truncated log
    density written out, and break points at the density's length scales around its mode."""
    from scipy import integrate

    from qodasim.optimize.distributions import log_ndtr_diff

    log_z = float(log_ndtr_diff(-mu / sigma, (1.0 - mu) / sigma))
    m = min(max(mu, 0.0), 1.0)
    ell = sigma**2 / (abs(m - mu) + sigma)

    def f(r, a, b):
        return (b - r) * (r - a) * np.exp(-((r - mu) ** 2) / (2 * sigma**2) - log_z) / (sigma * np.sqrt(2 * np.pi))

    total = 0.0
    lv = levels.values
    for a, b in zip(lv[:-1], lv[1:]):
        pts = [p for p in (m + k * ell for k in (-30, -10, -3, -1, 0, 1, 3, 10, 30)) if a < p < b]
        total += integrate.quad(f, a, b, args=(a, b), points=pts or None, limit=500, epsabs=0.0, epsrel=1e-11)[0]
    return total


def test_truncated_normal_psi_far_outside_the_unit_interval():
    """NaN for μ = −0.1, σ = 0.01 and μ = 2, σ = 0.02; −1.75e-4 (true 1.89e-5) for a fitted Laplace law."""
    from qodasim import Levels
    from qodasim.optimize import TruncatedNormal, psi

    cases = [(Levels.uniform(4), -0.1, 0.01, 2.433e-4), (Levels.uniform(4), 2.0, 0.02, 9.960e-5),
             (Levels.from_interior([0.0039, 0.0103, 0.0307]), -0.291, 0.039, 1.89e-5)]  # fmt: skip
    for lv, mu, sigma, want in cases:
        got = psi(lv, TruncatedNormal(mu, sigma))
        assert np.isclose(got, want, rtol=2e-3) and np.isclose(got, _psi_by_quadrature(lv, mu, sigma), rtol=1e-8)


def test_truncated_normal_psi_matches_quadrature_on_a_grid():
    """μ ∈ [−2, 3], σ ∈ [1e-3, 1e3] (log-uniform), random levels: relative 1e-7."""
    from qodasim import Levels
    from qodasim.optimize import TruncatedNormal, psi

    rng = np.random.default_rng(4)
    for _ in range(40):
        mu, sigma = float(rng.uniform(-2, 3)), float(10 ** rng.uniform(-3, 3))
        lv = Levels.from_interior(np.sort(rng.uniform(0, 1, int(rng.integers(1, 6)))))
        dist = TruncatedNormal(mu, sigma)
        ref = _psi_by_quadrature(lv, mu, sigma)
        assert np.isclose(psi(lv, dist), ref, rtol=1e-7, atol=1e-300), (mu, sigma)
        P, M1, M2 = dist.moments(lv.values[:-1], lv.values[1:])
        assert np.isclose(P.sum(), 1.0, rtol=1e-10) and np.all(P >= 0) and np.all(M2 <= M1 + 1e-15)
        x = np.linspace(0, 1, 11)
        assert np.all(np.diff(dist.cdf(x)) >= 0) and np.isclose(dist.cdf(1.0), 1.0)
        q = dist.ppf(np.array([0.1, 0.5, 0.9]))
        assert np.allclose(dist.cdf(q), [0.1, 0.5, 0.9], atol=1e-9)


def test_truncated_normal_fit_is_the_likelihood_optimum():
    """On Laplace magnitudes the old fit (μ = −0.314, σ = 0.040) was not the MLE; ours has lower NLL
    than it and than every point of a grid around the answer."""
    from qodasim.optimize import fit_truncated_normal
    from qodasim.optimize.distributions import log_ndtr_diff

    rng = np.random.default_rng(0)
    v = rng.laplace(size=20000)
    r = np.abs(v) / np.linalg.norm(v)

    def nll(mu, s):
        log_z = log_ndtr_diff(-mu / s, (1 - mu) / s)
        return float(np.sum((r - mu) ** 2) / (2 * s * s) + r.size * np.log(s) + r.size * log_z)

    fit = fit_truncated_normal(r)
    assert nll(fit.mu, fit.sigma) < nll(-0.314, 0.040)
    for dm in (-0.02, 0.0, 0.02):
        for ds in (0.98, 1.0, 1.02):
            assert nll(fit.mu * (1 + dm), fit.sigma * ds) >= nll(fit.mu, fit.sigma) - 1e-6


def test_qgenx_corrected_rule_reproduces_the_issue_figures():
    """Bilinear game (n = 5, K = 4, T = 4000, 16 replicas, uncompressed): Q-GenX's final gap with
    its own difference is 0.0975 (absolute noise), 0.0318 (relative, σ_R = 0.5) and 0.0049 (no noise),
    against 0.1011, 0.0418 and 0.0073 with QODA's difference (issue 12).  Tolerance: 4 standard
    errors of the replica mean (+1e-4 for the noiseless runs, whose replicas coincide)."""
    p = bilinear_game(5, seed=1)
    for noise, want in ((NoiseModel("absolute", sigma=1.0), 0.0975), (NoiseModel("relative", sigma_rel=0.5), 0.0318),
                        (NoiseModel(), 0.0049)):  # fmt: skip
        res = solve(p, SolverConfig(method="qgenx", K=4, T=4000, noise=noise, replicas=16, seed=0, record=10))
        g = res.measures["gap_avg"][:, -1]
        assert abs(g.mean() - want) <= 4 * g.std(ddof=1) / 4 + 1e-4 + 5e-5, (noise.kind, g.mean())


# ------------------------------------------------------------------------- layer-wise levels
def test_optimize_layerwise_global_scope_with_draws_reports_what_the_quantizer_does():
    """4 draws of a two-layer vector, global scope: the reported 0.0389 was 0.333 in fact (the draws
    were normalized as one long vector)."""
    from qodasim import LayerLayout, LayerwiseQuantizer
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
    from qodasim import LayerLayout, LayerwiseQuantizer
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
    from qodasim.experiments import get, load_config

    _, cfg = load_config("mqv", "quick")
    res = get("mqv").run(dict(cfg, alphas=[2, 6]), progress=False)
    for row in res.data["rows"]:
        assert row["global"] < row["uniform"] * 0.99


# ------------------------------------------------------------------------- layer-wise LP bracket
def test_layerwise_lp_bracket_is_scaled():
    """A layer of 10^6 coordinates: both solvers were optimal_inaccurate; the bracket widened with knots."""
    import warnings

    from qodasim import Levels
    from qodasim.bounds import layerwise_tight_bound, layerwise_tight_bound_lp

    args = ([10**6, 3], [0, 1], [Levels.exponential(3), Levels.uniform(4)])
    exact = layerwise_tight_bound(*args, "global")
    widths = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no optimal_inaccurate
        for k in (16, 32, 64):
            lo, hi = layerwise_tight_bound_lp(*args, n_knots=k)
            assert lo <= exact * (1 + 1e-7) and exact <= hi * (1 + 1e-7)
            widths.append(hi - lo)
    assert widths[-1] < widths[0] and widths[-1] / exact < 1e-6


# ------------------------------------------------------------------------------- smaller items
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


def test_uniform_level_tables_travel_as_their_parameter():
    from qodasim import Key, Levels, Quantizer, coding

    v = np.random.default_rng(3).standard_normal(100)
    for s in (1, 4, 255, 3000):
        qv = Quantizer(Levels.uniform(s)).quantize(v, Key(1))
        msg = coding.encode(qv)
        assert msg.bits["level_tables"] == 1 + len(coding.elias.omega_bits(s))
        assert coding.decode(msg).equals(qv)
    qv = Quantizer(Levels.exponential(3)).quantize(v, Key(1))
    assert coding.encode(qv).bits["level_tables"] == 1 + len(coding.elias.omega_bits(5)) + 3 * 64


def test_fit_slope_refuses_non_positive_gaps():
    """fit_slope silently dropped gaps ≤ 0, which hid the negative restricted gaps."""
    from qodasim.experiments.convergence import fit_slope

    it = np.round(np.geomspace(1, 10000, 20))
    assert np.isclose(fit_slope(it, it**-0.5), -0.5)
    gaps = it**-0.5
    gaps[-5] = -0.59
    with pytest.raises(ValueError, match="<= 0"):
        fit_slope(it, gaps)


# --------------------------------------------------------------- survivors of the mutation run
def test_simple_and_closed_form_bounds_against_their_formulas():
    """κ = max (ℓ_{j+1} − ℓ_j)²/(4ℓ_jℓ_{j+1}) written out, on levels with ratios far from 2."""
    from qodasim import Levels, bounds

    rng = np.random.default_rng(6)
    for _ in range(30):
        lv = Levels.from_interior(np.sort(10 ** rng.uniform(-4, -0.01, int(rng.integers(1, 6)))))
        d = int(rng.integers(1, 10**6))
        v = lv.values
        kappa = max(((v[j + 1] - v[j]) ** 2 / (4 * v[j] * v[j + 1]) for j in range(1, v.size - 1)), default=0.0)
        want = kappa + min(v[1] * np.sqrt(d), d * v[1] ** 2 / 4)
        assert np.isclose(bounds.simple_bound(lv, d, transmitted=False), want, rtol=1e-12)
    assert bounds.qsgd_bound(2, 16, transmitted=False) == 2.0  # the √d/s branch
    assert bounds.qsgd_bound(s=8, d=16, transmitted=False) == 0.25  # the d/s² branch
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="s must"):
            bounds.natural_dithering_bound(bad, 4)
        with pytest.raises(ValueError, match="s must"):
            bounds.qsgd_bound(bad, 4)


def test_distance_operator_norm_and_sampled_gap():
    from qodasim.vi import distance_to_solution, operator_norm, restricted_gap_sampled

    p = affine_monotone(5, mu=0.1, seed=7)
    rng = np.random.default_rng(7)
    X = rng.standard_normal((3, p.d))
    assert np.allclose(distance_to_solution(p, X), np.sqrt(((X - p.solution) ** 2).sum(axis=1)))
    assert np.allclose(operator_norm(p, X), np.sqrt((p.operator(X) ** 2).sum(axis=1)))
    center = p.solution + 0.3 * rng.standard_normal(p.d)  # off zero: a sign slip on the centre shows
    radius = float(np.linalg.norm(center - p.solution)) + 0.5
    exact = RestrictedGap(p, center, radius)(X)
    sampled = restricted_gap_sampled(p, X, center, radius, n_samples=4000)
    assert np.all(sampled >= 0) and np.all(sampled <= exact + 1e-9) and np.all(sampled >= 0.5 * exact)
    with pytest.raises(ValueError, match="dimension"):
        RestrictedGap(p, np.zeros(p.d - 1), 1.0)
    for bad_r in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="radius"):
            RestrictedGap(p, center, bad_r)
    assert RestrictedGap(p, center, 0.05)(X).shape == (3,)


def test_decoder_group_count_matches_the_plan():
    """The decoder's pre-allocation check counts norm groups by arithmetic; it must equal the plan's."""
    from qodasim import LayerLayout
    from qodasim.coding.protocol import _groups_of
    from qodasim.quantize import PlanSpec
    from qodasim.quantize.core import cached_plan

    rng = np.random.default_rng(8)
    for _ in range(40):
        sizes = rng.integers(1, 50, int(rng.integers(1, 5)))
        m = int(rng.integers(1, 3))
        layout = LayerLayout(sizes, rng.integers(0, m, sizes.size), n_types=m)
        if rng.random() < 0.5:
            spec = PlanSpec(layout, "global", (2.0,) * m, (0,) * m, int(rng.choice([0, 1, 3, 7, 64])))
        else:
            spec = PlanSpec(layout, "layer", (2.0,) * m, tuple(int(b) for b in rng.choice([0, 1, 4, 9], m)), 0)
        assert _groups_of(spec) == cached_plan(spec).n_groups
