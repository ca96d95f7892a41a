"""Variational inequalities: problems, noise oracles and gap measures (THEORY §5); a WGAN in jax
(:mod:`qodasim.vi.wgan`, the ``jax`` extra: the module imports without it)."""

from .measures import RestrictedGap, distance_to_solution, operator_norm, restricted_gap_sampled
from .noise import NoiseModel
from .problems import (
    AffineProblem,
    KellyAuction,
    MatrixGame,
    Problem,
    affine_monotone,
    bilinear_game,
    covariance_gan,
    layered_problem,
    strongly_monotone_quadratic,
)
from .wgan import WGANProblem, wgan

__all__ = [
    "AffineProblem",
    "KellyAuction",
    "MatrixGame",
    "NoiseModel",
    "Problem",
    "RestrictedGap",
    "affine_monotone",
    "bilinear_game",
    "covariance_gan",
    "distance_to_solution",
    "layered_problem",
    "operator_norm",
    "restricted_gap_sampled",
    "strongly_monotone_quadratic",
    "WGANProblem",
    "wgan",
]
