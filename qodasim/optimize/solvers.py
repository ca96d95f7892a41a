"""Solving cvxpy problems: Clarabel explicitly, SCS as fallback, inaccurate results checked."""

from __future__ import annotations

import warnings

__all__ = ["solve", "SolverError"]


class SolverError(ValueError):
    """A convex program could not be solved to a usable accuracy."""


def solve(problem, solver: str | None = None, residual_tol: float = 1e-6):
    """Solve ``problem`` and return it.

    Tries ``solver`` (default Clarabel), then SCS.  ``optimal`` is accepted; ``optimal_inaccurate``
    is accepted with a warning only if the constraint violation is below ``residual_tol``; any other
    status raises :class:`SolverError` naming the status.
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
    raise SolverError(f"convex program not solved ({'; '.join(tried)})")
