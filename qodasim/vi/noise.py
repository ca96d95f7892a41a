"""Stochastic oracles: ``V_k(X) = A(X) + U_k(X)``, independent across workers (THEORY §5).

* absolute: ``U = σ ξ/√d`` with ``ξ ~ N(0, I)``, so ``E‖U‖² = σ²``;
* relative: ``U = √σ_R ‖A(X)‖ ξ/√d``, so ``E‖U‖² = σ_R ‖A(X)‖²``;
* mixed: the sum of both (independent draws).

Noise is drawn from NumPy generators keyed by ``(seed, replica, worker, call)`` through
``SeedSequence``, so a run is reproducible and each worker's noise is independent of the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NoiseModel"]

KINDS = ("none", "absolute", "relative", "mixed")


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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"noise kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("sigma", "sigma_rel"):
            val = getattr(self, name)
            if not (np.isfinite(val) and val >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {val!r}")

    def sample(self, A: np.ndarray, K: int, seed: int, call: int) -> np.ndarray:
        """Oracle outputs of ``K`` workers at the batch ``A = A(X)`` (shape ``(R, d)``) → ``(R, K, d)``."""
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
