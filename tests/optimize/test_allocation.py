"""Allocation across layers and time: the bit-budget split, L-GreCo and DQ-SGD against their exact problems."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim.optimize import (
    dq_sgd_schedule,
    lgreco,
    lgreco_brute_force,
    split_bit_budget,
    split_bit_budget_kkt,
)


def test_bit_budget_split_matches_kkt():
    rng = np.random.default_rng(7)
    for _ in range(3):
        w, dm = rng.uniform(0.1, 5, 4), rng.integers(10, 1000, 4).astype(float)
        budget = float(rng.uniform(0.5, 4) * dm.sum())
        x_cvx, x_kkt = split_bit_budget(w, dm, budget), split_bit_budget_kkt(w, dm, budget)
        assert np.allclose(x_cvx, x_kkt, atol=1e-4)
        assert dm @ x_kkt <= budget * (1 + 1e-9)
        active = x_kkt > 1e-9
        lam = 2 * w[active] * np.exp(-2 * x_kkt[active])
        assert np.allclose(lam, lam[0], rtol=1e-8)  # equal marginal value on active types
    with pytest.raises(ValueError):
        split_bit_budget([1, -1], [1, 1], 3)


def test_lgreco_matches_brute_force():
    rng = np.random.default_rng(8)
    for _ in range(10):
        L, O = 5, 4
        bits = [np.sort(rng.uniform(1, 100, O)) for _ in range(L)]
        errs = [np.sort(rng.uniform(0.1, 10, O))[::-1] for _ in range(L)]
        default = rng.integers(0, O, L)
        alpha = rng.uniform(0.8, 1.5)
        choice = lgreco(bits, errs, default, alpha, buckets=4000)
        bf_choice, bf_bits = lgreco_brute_force(bits, errs, default, alpha)
        budget = alpha * sum(e[d] for e, d in zip(errs, default))
        assert sum(e[o] for e, o in zip(errs, choice)) <= budget * (1 + 1e-12)
        got = sum(b[o] for b, o in zip(bits, choice))
        assert got >= bf_bits - 1e-9
        # discretization (round-up) can cost at most what L extra error units allow: compare with
        # the brute force at a budget shrunk by L units
        _, bf_tight = lgreco_brute_force(bits, errs, default, alpha * (1 - L / 4000))
        assert got <= bf_tight + 1e-9


def test_dq_sgd_schedule_meets_budget_with_equality_and_kkt():
    rng = np.random.default_rng(9)
    g = rng.uniform(0.5, 3, 20)
    rho, d, budget = 0.9, 1000, 50.0
    s = dq_sgd_schedule(g, rho, d, budget)
    T = g.size
    w = rho ** (T - 1 - np.arange(T))
    assert np.isclose(np.sum(w * d / (4 * s**2) * g**2), budget)
    # KKT: d/(s ln 2) = λ w d g² /(2 s³) for all t ⇔ s² / (w g²) constant
    ratio = s**2 / (w * g**2)
    assert np.allclose(ratio, ratio[0])
    with pytest.raises(ValueError):
        dq_sgd_schedule([1.0, 0.0], 0.9, 10, 1.0)


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


def test_lgreco_refuses_a_table_that_cannot_fit_and_stores_choices_small(monkeypatch):
    """1,000 layers × 10^7 buckets: one line naming ``buckets`` (was a MemoryError asking 74.5 GiB); the
    choice table takes one byte per entry for up to 256 options, with the same allocation."""
    from qodasim import _memory
    from qodasim.optimize import lgreco

    rng = np.random.default_rng(2)
    bits = [np.sort(rng.random(4))[::-1] * 10 for _ in range(1000)]
    errors = [np.sort(rng.random(4)) for _ in range(1000)]
    default = np.full(1000, 1)
    monkeypatch.setattr(_memory, "available_memory", lambda: 8 * 2**30)
    with pytest.raises(ValueError, match="lower buckets"):
        lgreco(bits, errors, default, buckets=10**7)
    small = lgreco(bits[:30], errors[:30], default[:30], buckets=2000)
    monkeypatch.setattr(_memory, "available_memory", lambda: 30 * 2001)  # fits only at one byte per entry
    assert np.array_equal(lgreco(bits[:30], errors[:30], default[:30], buckets=2000), small)
