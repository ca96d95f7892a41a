"""Gap measures: the trust-region subproblem against cvxpy, the restricted gap along runs, the distance and sampled
gaps."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim.vi import AffineProblem, affine_monotone, bilinear_game, layered_problem
from qodasim.vi.gaps import RestrictedGap, _trust_region_max


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


def test_gap_at_the_solution_is_zero_and_never_negative_along_runs(run_solver):
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
        res = run_solver(p, method="qoda", T=3000, record=60)
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
