"""Solvers: the GenX template (DA, Q-GenX, QODA), baselines, step rules, and the simulated K-worker runner."""

from .genx import (
    METHODS,
    ONE_MESSAGE,
    TEMPLATES,
    TWO_MESSAGES,
    SolverConfig,
    SolverError,
    SolverResult,
    Template,
    record_points,
    solve,
)
from .policies import DQSchedule, FindTypes, LevelPolicy, LGreCo, Reoptimize, policy_from
from .steps import AdaptiveStep, ConstantStep, StepRule, step_rule

__all__ = ["METHODS", "ONE_MESSAGE", "TEMPLATES", "TWO_MESSAGES", "AdaptiveStep", "FindTypes", "ConstantStep",
           "DQSchedule", "LGreCo", "LevelPolicy", "Reoptimize", "SolverConfig", "SolverError", "SolverResult",
           "StepRule", "Template",
           "policy_from", "record_points", "solve", "step_rule"]  # fmt: skip
