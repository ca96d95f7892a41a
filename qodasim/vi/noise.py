"""Stochastic oracles: ``V_k(X) = A(X) + U_k(X)``, independent across workers (THEORY §5).

* absolute: ``U = σ ξ/√d`` with ``ξ ~ N(0, I)``, so ``E‖U‖² = σ²``;
* relative: ``U = √σ_R ‖A(X)‖ ξ/√d``, so ``E‖U‖² = σ_R ‖A(X)‖²``;
* mixed: the sum of both (independent draws);
* finite_sum: each worker evaluates the problem's own stochastic operator on a minibatch of its
  finite-sum form (``problem.sample_operator``), e.g. minibatch covariances in the covariance GAN.

Noise is drawn from NumPy generators keyed by ``(seed, replica, worker, call)`` through
``SeedSequence``, so a run is reproducible and each worker's noise is independent of the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NoiseModel"]

KINDS = ("none", "absolute", "relative", "mixed", "finite_sum")


@dataclass(frozen=True)
class NoiseModel:
    """Noise profile of the oracle.

    Parameters
    ----------
    kind : {"none", "absolute", "relative", "mixed"}
    sigma : float
        Absolute level ``σ`` (``E‖U‖² = σ²``).
    sigma_rel : float
        Relative level ``σ_R`` (``E‖U‖² = σ_R ‖A(X)‖²``).
    """

    kind: str = "none"
    sigma: float = 0.0
    sigma_rel: float = 0.0
    batch: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"noise kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("sigma", "sigma_rel"):
            val = getattr(self, name)
            if not (np.isfinite(val) and val >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {val!r}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, (int, np.integer)) or self.batch < 1:
            raise ValueError(f"batch must be an integer >= 1, got {self.batch!r}")

    def sample_at(self, problem, X: np.ndarray, K: int, seed: int, call: int) -> np.ndarray:
        """Oracle outputs of ``K`` workers at the points ``X`` (``(R, d)``) → ``(R, K, d)``."""
        if self.kind == "finite_sum":
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(call), 1]))
            return problem.sample_operator(X, K, self.batch, rng)
        return self.sample(problem.operator(X), K, seed, call)

    def sample(self, A: np.ndarray, K: int, seed: int, call: int) -> np.ndarray:
        """Oracle outputs of ``K`` workers at the batch ``A = A(X)`` (shape ``(R, d)``) → ``(R, K, d)``."""
        if self.kind == "finite_sum":
            raise ValueError("finite_sum noise needs the problem: use sample_at(problem, X, ...)")
        R, d = A.shape
        out = np.broadcast_to(A[:, None, :], (R, K, d)).copy()
        if self.kind == "none":
            return out
        ss = np.random.SeedSequence([int(seed), int(call)])
        rng = np.random.default_rng(ss)
        if self.kind in ("absolute", "mixed") and self.sigma > 0:
            out += (self.sigma / np.sqrt(d)) * rng.standard_normal((R, K, d))
        if self.kind in ("relative", "mixed") and self.sigma_rel > 0:
            scale = np.sqrt(self.sigma_rel) * np.linalg.norm(A, axis=1) / np.sqrt(d)
            out += scale[:, None, None] * rng.standard_normal((R, K, d))
        return out
