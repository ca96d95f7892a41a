"""Gap measures (THEORY §5): restricted gap, operator norm, distance to the solution, duality gap.

The restricted gap ``Gap_C(x̂) = sup_{x∈C} ⟨A(x), x̂ − x⟩`` on a ball ``C = B(c, r)``.  For an affine
``A(x) = Mx + b`` the objective is the concave quadratic ``−xᵀSx + xᵀ(Mᵀx̂ − b) + bᵀx̂`` (``S`` the
symmetric part of ``M``), so the sup is a trust-region subproblem: exact through the eigenvectors
of ``S`` (per block) and a monotone secular equation for the multiplier.
"""

from __future__ import annotations

import numpy as np

from .gaps import RestrictedGap, restricted_gap_sampled
from .problems import Problem

__all__ = ["RestrictedGap", "operator_norm", "distance_to_solution", "restricted_gap_sampled"]


def operator_norm(problem: Problem, X) -> np.ndarray:
    """``‖A(x)‖`` per row."""
    return np.linalg.norm(problem.operator(np.atleast_2d(X)), axis=1)


def distance_to_solution(problem: Problem, X) -> np.ndarray:
    """``‖x − x*‖`` per row (NaN if the problem has no known solution)."""
    sol = problem.solution
    X = np.atleast_2d(X)
    if sol is None:
        return np.full(X.shape[0], np.nan)
    return np.linalg.norm(X - sol, axis=1)
