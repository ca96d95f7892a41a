"""Solvers: the GenX template (DA, Q-GenX, QODA), baselines, and the simulated K-worker runner."""

from .genx import METHODS, ONE_MESSAGE, TWO_MESSAGES, SolverConfig, SolverError, SolverResult, record_points, solve

__all__ = ["METHODS", "ONE_MESSAGE", "TWO_MESSAGES", "SolverConfig", "SolverError", "SolverResult", "record_points",
           "solve"]  # fmt: skip
