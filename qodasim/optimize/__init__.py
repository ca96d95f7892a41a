"""Level optimizers and bit allocation (THEORY §4)."""

from .solvers import SolverError, solve

__all__ = ["SolverError", "solve"]
