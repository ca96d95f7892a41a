"""Solving cvxpy problems: Clarabel explicitly, SCS as fallback, inaccurate results checked."""

from __future__ import annotations

import warnings

from ..errors import ConvexSolverError

__all__ = ["ConvexSolverError", "SolverError", "solve", "solve_convex"]

#: The old name of :class:`~qodasim.errors.ConvexSolverError` (kept for one release; it was a second
#: ``SolverError`` beside :class:`qodasim.solvers.SolverError`).
SolverError = ConvexSolverError


def solve_convex(problem, solver: str | None = None, residual_tol: float = 1e-6):
    """Solve ``problem`` and return it.

    Tries ``solver`` (default Clarabel), then SCS.  ``optimal`` is accepted; ``optimal_inaccurate``
    is accepted with a warning only if the constraint violation is below ``residual_tol``; any other
    status raises :class:`~qodasim.errors.ConvexSolverError` naming the status.
    """
    import cvxpy as cp

    order = [solver] if solver else [cp.CLARABEL, cp.SCS]
    tried = []
    for name in order:
        try:
            problem.solve(solver=name)
        except (cp.error.SolverError, ValueError) as exc:  # solver missing or failed
            tried.append(f"{name}: {exc}")
            continue
        status = problem.status
        if status == cp.OPTIMAL:
            return problem
        if status == cp.OPTIMAL_INACCURATE:
            viol = max((float(c.violation().max()) if c.violation().size else 0.0) for c in problem.constraints)
            if viol <= residual_tol:
                warnings.warn(f"{name} returned optimal_inaccurate (max violation {viol:.2e})", stacklevel=2)
                return problem
            tried.append(f"{name}: optimal_inaccurate with violation {viol:.2e}")
            continue
        tried.append(f"{name}: status {status}")
    raise ConvexSolverError(f"convex program not solved ({'; '.join(tried)})")


#: The old name of :func:`solve_convex` (kept for one release; it was a second ``solve`` beside
#: :func:`qodasim.solvers.solve`).
solve = solve_convex
