"""Conformance checks for problems (:class:`~qodasim.vi.Problem`).

:data:`PROBLEM_CHECKS` is a tuple of named :class:`~qodasim.suite.Check` s; :func:`check_problem` runs
them all and reports every failure.  Monotonicity (``⟨A(x) − A(y), x − y⟩ ≥ 0``, THEORY §5) and the
solution's VI inequality are checked only for problems that let the solver measure the restricted gap
(``measures()`` is ``None``): a problem with its own measures (a non-monotone game) makes no such claim.
"""

from __future__ import annotations

import numpy as np

from ..quantize.layers import LayerLayout
from ..suite import Check, run_checks
from ..validate import is_int

__all__ = ["PROBLEM_CHECKS", "check_problem"]

_R = 4


def _points(problem, seed: int) -> np.ndarray:
    """Feasible points around the start: ``project(x0 + noise)`` (``(R, d)``)."""
    rng = np.random.default_rng(seed)
    x0 = np.asarray(problem.x0(), np.float64)
    return problem.project(x0[None, :] + rng.standard_normal((_R, problem.d)))


def _interface(problem) -> None:
    d = problem.d
    assert is_int(d) and d >= 1, f"d must be an integer >= 1: {d!r}"
    assert isinstance(problem.layout, LayerLayout), "layout must be a LayerLayout"
    assert problem.layout.d == d, f"the layout covers {problem.layout.d} coordinates, the problem has d = {d}"
    for member in ("operator", "project", "x0", "measures"):
        assert callable(getattr(problem, member, None)), f"{member} must be callable"
    assert np.shape(problem.x0()) == (d,), f"x0() must have shape ({d},)"


def _operator(problem) -> None:
    """``operator`` maps ``(R, d)`` to finite ``(R, d)`` row by row; ``problem(x)`` takes one point."""
    X = _points(problem, 1)
    out = np.asarray(problem.operator(X))
    assert out.shape == X.shape, f"operator must map (R, d) to (R, d), got {out.shape}"
    assert np.all(np.isfinite(out)), "operator gave non-finite values"
    rows = np.stack([np.asarray(problem.operator(X[i : i + 1]))[0] for i in range(_R)])
    assert np.allclose(rows, out, rtol=1e-12, atol=1e-12), "operator's rows depend on the other rows of the batch"
    assert np.allclose(problem(X[0]), out[0], rtol=1e-12, atol=1e-12), "problem(x) must equal operator on one row"


def _project(problem) -> None:
    """``project`` keeps the shape, is idempotent, and the start is feasible."""
    rng = np.random.default_rng(2)
    Y = rng.standard_normal((_R, problem.d)) * 3.0
    P = np.asarray(problem.project(Y))
    assert P.shape == Y.shape and np.all(np.isfinite(P)), "project must keep the shape and give finite points"
    assert np.allclose(problem.project(P), P, atol=1e-10), "project is not idempotent"
    x0 = np.asarray(problem.x0(), np.float64)
    assert np.allclose(problem.project(x0[None, :])[0], x0, atol=1e-10), "x0() is not feasible"


def _monotone(problem) -> None:
    if problem.measures(np.asarray(problem.x0())[None, :]) is not None:
        return  # the problem measures itself: no monotonicity claimed
    X, Y = _points(problem, 3), _points(problem, 4)
    dA = np.asarray(problem.operator(X)) - np.asarray(problem.operator(Y))
    inner = np.sum(dA * (X - Y), axis=1)
    tol = 1e-9 * np.linalg.norm(dA, axis=1) * np.linalg.norm(X - Y, axis=1)
    assert np.all(inner >= -tol), f"not monotone: <A(x) − A(y), x − y> = {inner.min():.3g} < 0"


def _solution(problem) -> None:
    """A known solution is feasible and solves the VI: ``⟨A(x*), x − x*⟩ ≥ 0`` at feasible ``x``."""
    sol = problem.solution
    if sol is None or problem.measures(np.asarray(problem.x0())[None, :]) is not None:
        return
    sol = np.asarray(sol, np.float64)
    assert sol.shape == (problem.d,), f"solution must have shape ({problem.d},)"
    assert np.allclose(problem.project(sol[None, :])[0], sol, atol=1e-9), "the solution is not feasible"
    A = np.asarray(problem.operator(sol[None, :]))[0]
    X = _points(problem, 5)
    gaps = (X - sol) @ A
    assert np.all(gaps >= -1e-8 * (1 + np.linalg.norm(A) * np.linalg.norm(X - sol, axis=1))), "x* does not solve the VI"


def _in_a_solve(problem) -> None:
    from ..solvers import SolverConfig, solve
    from .noise import NoiseModel

    cfg = SolverConfig(method="qoda", K=2, T=10, compression="global", levels="uniform:3",
                       noise=NoiseModel("absolute", 0.1))  # fmt: skip
    res = solve(problem, cfg)
    assert res.status == "ok", f"a short solve ended {res.status!r}: {res.message}"


#: The problem suite (:class:`~qodasim.vi.Problem`).
PROBLEM_CHECKS = (
    Check("interface", _interface),
    Check("operator", _operator),
    Check("project", _project),
    Check("monotone", _monotone),
    Check("solution", _solution),
    Check("in_a_solve", _in_a_solve),
)


def check_problem(problem) -> None:
    """Run :data:`PROBLEM_CHECKS` on ``problem``; ``AssertionError`` listing every failure."""
    run_checks(problem, PROBLEM_CHECKS)
