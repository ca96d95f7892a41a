"""Layer-wise level optimization and the MQV comparison (THEORY §2, QODA).

Given per-layer gradient samples and a layer → type map, optimize one level sequence per type on the
pooled normalized magnitudes of its layers, and compare the layer-wise minimum quantization variance
``Σ_m w_m MQV_m(α)`` against the best single global sequence ``min_ℓ Σ_m w_m Ψ_m(ℓ)`` (weights
``w_m`` = share of coordinates).  With the exact optimizer the layer-wise value can never be larger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..levels import Levels
from ..quantize.core import vector_norm
from .distributions import Empirical, normalized_magnitudes, psi
from .levels import optimize_levels

__all__ = ["LayerwiseLevels", "optimize_layerwise"]


@dataclass(frozen=True)
class LayerwiseLevels:
    """Per-type optimal levels and the MQV comparison."""

    levels: tuple[Levels, ...]
    type_weights: np.ndarray
    type_psi: np.ndarray
    mqv: float
    global_levels: Levels
    global_mqv: float

    @property
    def gain(self) -> float:
        """``global_mqv / mqv`` (≥ 1 for the exact optimizer)."""
        return float(self.global_mqv / self.mqv) if self.mqv > 0 else np.inf


def optimize_layerwise(layers, types, alpha: int, method: str = "exact", q: float = 2.0,
                       scope: str = "layer", **kwargs) -> LayerwiseLevels:  # fmt: skip
    """Optimize one level sequence per type from per-layer samples.

    Parameters
    ----------
    layers : sequence of arrays
        Gradient samples of each layer (each array is one layer's vector; several draws of a layer
        may be passed as separate entries with the same type).
    types : sequence of int
        Type of each entry of ``layers``.
    scope : {"layer", "global"}
        Normalize each layer by its own norm, or all layers by the norm of their concatenation.
    """
    types = np.asarray(types, np.int64)
    if len(layers) == 0 or types.shape != (len(layers),) or types.min() < 0:
        raise ValueError("layers and types must be non-empty and of equal length, types >= 0")
    if scope == "layer":
        mags = [normalized_magnitudes(v, q) for v in layers]
    elif scope == "global":
        whole = np.concatenate([np.asarray(v, np.float64).ravel() for v in layers])
        if not np.all(np.isfinite(whole)):
            raise ValueError("layers: the concatenated vector is zero or non-finite")
        norm = vector_norm(whole, q)
        if norm == 0:
            raise ValueError("layers: the concatenated vector is zero or non-finite")
        mags = [np.abs(np.asarray(v, np.float64).ravel()) / norm for v in layers]
    else:
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    m_types = int(types.max()) + 1
    pooled = [np.concatenate([mags[i] for i in np.flatnonzero(types == m)] or [np.zeros(0)]) for m in range(m_types)]
    if any(p.size == 0 for p in pooled):
        raise ValueError("every type 0..M-1 needs at least one layer")
    counts = np.array([p.size for p in pooled], np.float64)
    weights = counts / counts.sum()
    per_type = [optimize_levels(p, alpha, method, **kwargs) for p in pooled]
    dists = [Empirical(p) for p in pooled]
    type_psi = np.array([psi(r.levels, dist) for r, dist in zip(per_type, dists)])
    glob = optimize_levels(np.concatenate(pooled), alpha, method, **kwargs)
    global_mqv = float(sum(w * psi(glob.levels, dist) for w, dist in zip(weights, dists)))
    return LayerwiseLevels(tuple(r.levels for r in per_type), weights, type_psi, float(weights @ type_psi),
                           glob.levels, global_mqv)  # fmt: skip
