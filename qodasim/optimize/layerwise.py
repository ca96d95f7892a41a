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
from ..quantize.norms import vector_norm
from .distributions import Empirical, psi
from .levels import optimize_levels

__all__ = ["LayerwiseLevels", "optimize_layerwise", "OBJECTIVES"]


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


OBJECTIVES = ("per_coordinate", "relative")


def _groups(v: np.ndarray, q: float, bucket: int | None) -> list[np.ndarray]:
    """``v`` split into its norm groups: buckets of ``bucket`` coordinates, or the whole."""
    if not bucket:
        return [v]
    return [v[i : i + bucket] for i in range(0, v.size, bucket)]


def _checked_samples(layers, types, q, scope, objective, draws, bucket_size):
    """``(types, q per type, bucket per type, draws, flat float64 layers)``, each argument checked."""
    types = np.asarray(types, np.int64)
    if len(layers) == 0 or types.shape != (len(layers),) or types.min() < 0:
        raise ValueError("layers and types must be non-empty and of equal length, types >= 0")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    m_types = int(types.max()) + 1
    qs = tuple(q) if isinstance(q, (tuple, list)) else (q,) * m_types
    bks = tuple(bucket_size) if isinstance(bucket_size, (tuple, list)) else (bucket_size,) * m_types
    if len(qs) != m_types or len(bks) != m_types:
        raise ValueError(f"q and bucket_size need one entry per type ({m_types})")
    if scope == "global" and (len(set(qs)) > 1 or any(bks)):
        raise ValueError("scope='global' takes one q for every type and no buckets")
    draws = np.zeros(len(layers), np.int64) if draws is None else np.asarray(draws, np.int64)
    if draws.shape != (len(layers),):
        raise ValueError("draws must give one draw id per entry of layers")
    vecs = [np.asarray(v, np.float64).ravel() for v in layers]
    if any(v.size == 0 or not np.all(np.isfinite(v)) for v in vecs):
        raise ValueError("layers must be non-empty and finite")
    return types, qs, bks, draws, vecs


def _magnitudes(vecs, types, draws, qs, bks, scope, objective):
    """Per type: the normalized magnitudes ``|g|/n`` of every group and their weights (1, or the
    group's energy share ``(n/‖draw‖)²`` over the number of draws for the relative objective)."""
    ids = np.unique(draws)
    whole = {k: np.concatenate([vecs[i] for i in np.flatnonzero(draws == k)]) for k in ids}
    energy = {k: vector_norm(w) for k, w in whole.items()}  # each draw's Euclidean norm (relative objective)
    gnorm = {k: vector_norm(w, qs[0]) for k, w in whole.items()} if scope == "global" else None
    m_types = len(qs)
    mags, wts = [[] for _ in range(m_types)], [[] for _ in range(m_types)]
    for v, t, k in zip(vecs, types, draws):
        for g in [v] if scope == "global" else _groups(v, qs[t], bks[t]):
            n = gnorm[k] if scope == "global" else vector_norm(g, qs[t])
            _check_group_norm(n, energy[k], objective)
            mags[t].append(np.minimum(np.abs(g) / n, 1.0))
            share = (n / energy[k]) ** 2 / ids.size if objective == "relative" else 1.0
            wts[t].append(np.full(g.size, share))
    return mags, wts


def _check_group_norm(n: float, energy: float, objective: str) -> None:
    """A group's norm and its draw's energy finite, the norm (and for ``"relative"`` the energy) nonzero."""
    if not np.isfinite(n) or not np.isfinite(energy):
        raise ValueError("a layer's (or draw's) norm overflows float64: scale the samples down")
    if n == 0.0:
        raise ValueError("a layer (or bucket, or draw) is the zero vector: its normalized magnitudes are undefined")
    if objective == "relative" and energy == 0.0:
        raise ValueError("a draw is the zero vector")


def optimize_layerwise(
    layers, types, alpha: int, method: str = "exact", q=2.0, scope: str = "layer", *, draws=None,
    objective: str = "per_coordinate", bucket_size=None, **kwargs
) -> LayerwiseLevels:  # fmt: skip
    """Optimize one level sequence per type from per-layer samples.

    Parameters
    ----------
    layers : sequence of arrays
        Gradient samples: each entry is one layer of one draw.
    types : sequence of int
        Type of each entry of ``layers``.
    alpha : int
        Interior levels per type.
    method : str
        Level optimizer (:func:`~qodasim.optimize.optimize_levels`); ``"histogram"`` takes no weights,
        so it serves ``objective="per_coordinate"`` only.
    q : float or sequence of float
        Norm order, one for all types or one per type (per-type orders need ``scope="layer"``).
    scope : {"layer", "global"}
        Normalize each layer (or bucket) by its own norm, or each draw by the norm of all its layers.
    draws : sequence of int, optional
        Draw id of each entry (default: all entries are one draw).  With ``scope="global"`` each draw
        is normalized by its own norm — several draws of a vector are several vectors, not one long
        one (which under-reported the variance eightfold on four draws).
    objective : {"per_coordinate", "relative"}
        What is minimized.  ``"per_coordinate"``: the mean normalized variance per coordinate,
        ``(1/n) Σ_i φ(r_i)`` (``= (1/d) Σ_l Var_l/n_l²`` with per-layer norms) — each coordinate
        weighs the same.  ``"relative"``: ``E‖Q(v) − v‖²/‖v‖² = Σ_i (n_{g(i)}/‖v‖)² φ(r_i)`` per draw,
        averaged over draws — a layer weighs by its share of the vector's energy.  The optimum of
        each is exact for its objective (weighted empirical distributions, QUIVER's DP).
    bucket_size : int or sequence of (int or None), optional
        Per-type bucket sizes (``scope="layer"`` only), as in
        :class:`~qodasim.quantize.LayerwiseQuantizer`.

    Returns :class:`LayerwiseLevels` with ``mqv`` the layer-wise objective and ``global_mqv`` that of
    the best single sequence for every type (same scope, same objective).
    """
    types, qs, bks, draws, vecs = _checked_samples(layers, types, q, scope, objective, draws, bucket_size)
    mags, wts = _magnitudes(vecs, types, draws, qs, bks, scope, objective)
    if any(len(m) == 0 for m in mags):
        raise ValueError("every type 0..M-1 needs at least one layer")
    pooled = [np.concatenate(m) for m in mags]
    pw = [np.concatenate(w) for w in wts]
    if objective == "per_coordinate":
        total = sum(w.size for w in pw)
        pw = [w / total for w in pw]
    weights = np.array([w.sum() for w in pw])
    dists = [Empirical(p, w) for p, w in zip(pooled, pw)]
    source = pooled if objective == "per_coordinate" else dists
    if method == "histogram" and objective != "per_coordinate":
        raise ValueError("method='histogram' takes no weights; use 'exact', 'alq' or 'amq' for objective='relative'")
    per_type = [optimize_levels(src, alpha, method, **kwargs) for src in source]
    type_psi = np.array([psi(r.levels, dist) for r, dist in zip(per_type, dists)])
    allsrc = (
        np.concatenate(pooled)
        if objective == "per_coordinate"
        else Empirical(np.concatenate(pooled), np.concatenate(pw))
    )
    glob = optimize_levels(allsrc, alpha, method, **kwargs)
    global_mqv = float(sum(w * psi(glob.levels, dist) for w, dist in zip(weights, dists)))
    return LayerwiseLevels(tuple(r.levels for r in per_type), weights, type_psi, float(weights @ type_psi),
                           glob.levels, global_mqv)  # fmt: skip
