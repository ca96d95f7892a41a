"""Level optimizers and bit allocation (THEORY §4)."""

from .allocation import dq_sgd_schedule, lgreco, lgreco_brute_force
from .autotype import AutoTypes, adjusted_rand_index, auto_layout, auto_types, auto_types_of
from .convex import bound_optimal_levels, split_bit_budget, split_bit_budget_kkt
from .distributions import (
    Distribution,
    Empirical,
    Mixture,
    TruncatedNormal,
    fit_mixture,
    fit_truncated_normal,
    normalized_magnitudes,
    psi,
)
from .layerwise import LayerwiseLevels, optimize_layerwise
from .levels import (
    LEVEL_METHODS,
    METHODS,
    LevelResult,
    alq_levels,
    amq_levels,
    brute_force_levels,
    exact_levels,
    histogram_error_bound,
    histogram_levels,
    optimize_levels,
)
from .solvers import ConvexSolverError, SolverError, solve, solve_convex

__all__ = [
    "AutoTypes",
    "adjusted_rand_index",
    "auto_layout",
    "auto_types",
    "auto_types_of",
    "LEVEL_METHODS",
    "METHODS",
    "Distribution",
    "Empirical",
    "LayerwiseLevels",
    "LevelResult",
    "Mixture",
    "ConvexSolverError",
    "SolverError",
    "TruncatedNormal",
    "alq_levels",
    "amq_levels",
    "bound_optimal_levels",
    "brute_force_levels",
    "dq_sgd_schedule",
    "exact_levels",
    "fit_mixture",
    "fit_truncated_normal",
    "histogram_error_bound",
    "histogram_levels",
    "lgreco",
    "lgreco_brute_force",
    "normalized_magnitudes",
    "optimize_layerwise",
    "optimize_levels",
    "psi",
    "solve",
    "solve_convex",
    "split_bit_budget",
    "split_bit_budget_kkt",
]
