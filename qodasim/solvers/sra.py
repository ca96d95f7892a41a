"""Compressed scatter-reduce-allgather (SRA): the two-stage aggregate, its bits and its variance (THEORY §8).

The collective the paper's system (CGX) runs.  The ``d`` coordinates are cut into ``K`` contiguous
chunks ``[⌊jd/K⌋, ⌊(j+1)d/K⌋)``; worker ``j`` owns chunk ``j``.

1. **Stage 1** — every worker ``k`` quantizes its vector ``g_k`` with ``Q_1``, chunk by chunk, and
   sends chunk ``j`` to worker ``j``.  A chunk must decode on its own, so ``Q_1`` normalizes per
   *piece*: a layer cut by a chunk boundary becomes two pieces with the layer's type and levels, each
   with its own norm (a global quantizer gets one norm per chunk).
2. **Reduce** — worker ``j`` decodes the ``K − 1`` chunks it received and its own, and forms the mean
   ``s_j = (1/K) Σ_k Q_1(g_k)_j`` (float64, workers added in order).
3. **Stage 2** — worker ``j`` re-quantizes ``s_j`` with the same piece-wise quantizer ``Q_2 = Q_1``
   and all-gathers it: every worker ends with ``Q_2(s)``.  The keys are in :func:`sra_aggregate`.

Both stages are unbiased and independent, so ``E Q_2(s) = ḡ = (1/K) Σ_k g_k`` and

``E‖Q_2(s) − ḡ‖² = (1/K²) Σ_k E‖Q_1(g_k) − g_k‖² + E_s E‖Q_2(s) − s‖²``,

the first term the all-gather's whole variance, the second the price of re-quantizing
(``≤ ε_{Q_2}·E‖s‖²``, not divided by ``K``).  :func:`sra_variance` gives both terms exactly (the
second at a given ``s``), :func:`sra_bits` the exact expected bits of every chunk message.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..coding import expected_bits
from ..quantize import BaseQuantizer, LayerLayout, LayerwiseQuantizer, Quantizer, dequantize_sum
from ..rng import GOLDEN, Key, mix64
from ..validate import check_int

__all__ = ["SRAResult", "chunk_bounds", "chunk_quantizers", "piece_quantizer", "sra_aggregate", "sra_bits",
           "sra_variance", "stage1_key", "stage2_key", "stage2_seed"]  # fmt: skip


def stage2_seed(seed: int) -> int:
    """The seed of stage 2's keys: ``mix64(seed + 7·φ)`` (SplitMix64's finalizer; ``φ`` the golden-ratio
    constant), so that its streams meet stage 1's ``(seed, worker, round)`` streams only by a 64-bit
    hash collision."""
    return mix64(int(seed) + 7 * GOLDEN)


def stage1_key(seed: int, sender: int, chunk: int, K: int, round: int) -> Key:
    """The key of worker ``sender``'s chunk ``chunk`` in ``round``: ``Key(seed, sender·K + chunk, round)``."""
    if not (0 <= chunk < K and 0 <= sender < K):
        raise ValueError(f"sender and chunk must lie in [0, K = {K}), got {sender} and {chunk}")
    return Key(seed, sender * K + chunk, round)


def stage2_key(seed: int, owner: int, round: int) -> Key:
    """The key of owner ``owner``'s re-quantized chunk in ``round``: ``Key(stage2_seed(seed), owner, round)``."""
    return Key(stage2_seed(Key(seed).seed), owner, round)


def _workers(K) -> int:
    check_int(K, "K", error=TypeError, show="type")
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    return int(K)


def chunk_bounds(d: int, K: int) -> np.ndarray:
    """The ``K + 1`` chunk offsets ``⌊jd/K⌋`` (worker ``j`` owns ``[b_j, b_{j+1})``); needs ``d ≥ K``."""
    K = _workers(K)
    check_int(d, "d", K, what=f"an integer >= K = {K} (every worker owns a chunk)")
    return np.arange(K + 1, dtype=np.int64) * int(d) // K


def _pieces(layout: LayerLayout, bounds: np.ndarray) -> tuple[LayerLayout, np.ndarray]:
    """The layout cut at the chunk bounds (types kept) and the chunk of each piece."""
    cuts = np.union1d(np.append(layout.offsets, layout.d), bounds)
    sizes = np.diff(cuts)
    starts = cuts[:-1]
    layer = np.searchsorted(layout.offsets, starts, side="right") - 1
    chunk = np.searchsorted(bounds, starts, side="right") - 1
    types = np.asarray(layout.types)[layer]
    return LayerLayout(sizes, types=types, n_types=layout.n_types), chunk.astype(np.int64)


def piece_quantizer(quantizer: BaseQuantizer, d: int, K: int) -> tuple[LayerwiseQuantizer, np.ndarray]:
    """SRA's quantizer ``Q_1 = Q_2``: ``quantizer`` with one norm per piece (layer ∩ chunk), and the
    chunk of every piece.

    A :class:`~qodasim.quantize.Quantizer` (one global norm, or buckets) becomes one norm per chunk
    (buckets restart at each chunk); a :class:`~qodasim.quantize.LayerwiseQuantizer` with per-layer
    norms keeps its types, levels, norm orders and buckets.  A layer-wise quantizer with one global
    norm is refused: a chunk cannot be decoded without the whole vector's norm.
    """
    bounds = chunk_bounds(d, K)
    if isinstance(quantizer, Quantizer):
        pieces, chunk = _pieces(LayerLayout.single(int(d)), bounds)
        q = LayerwiseQuantizer(pieces, (quantizer.levels,), q=quantizer.q, bucket_size=quantizer.bucket_size,
                               engine=quantizer.engine)  # fmt: skip
        return q, chunk
    if isinstance(quantizer, LayerwiseQuantizer):
        if quantizer.scope != "layer":
            raise ValueError("quantizer: SRA needs per-layer norms (scope='layer'); a chunk of a vector with "
                             "one global norm cannot be decoded on its own")  # fmt: skip
        if quantizer.layout.d != d:
            raise ValueError(f"quantizer: its layout has d = {quantizer.layout.d}, the vectors d = {d}")
        pieces, chunk = _pieces(quantizer.layout, bounds)
        return replace(quantizer, layout=pieces), chunk
    raise TypeError(f"quantizer must be a Quantizer or LayerwiseQuantizer, got {type(quantizer).__name__}")


def _chunk_quantizer(Q: LayerwiseQuantizer, chunk: np.ndarray, j: int) -> LayerwiseQuantizer:
    """The part of the piece quantizer ``Q`` that worker ``j``'s chunk message uses (a message of its own)."""
    sel = chunk == j
    sub = LayerLayout(Q.layout.sizes[sel], types=np.asarray(Q.layout.types)[sel], n_types=Q.layout.n_types)
    return replace(Q, layout=sub)


@dataclass(frozen=True)
class SRAResult:
    """One SRA round: the aggregate every worker ends with, and both stages' messages.

    Attributes
    ----------
    aggregate : ndarray (d,)
        ``Q_2(s)``, dequantized (float64).
    mean : ndarray (d,)
        ``s``: the mean of the workers' dequantized stage-1 chunks.
    stage1 : list of list of QuantizedVector
        ``stage1[k][j]``: worker ``k``'s chunk ``j`` (sent to worker ``j``; ``j = k`` stays home).
    stage2 : list of QuantizedVector
        ``stage2[j]``: owner ``j``'s re-quantized chunk (all-gathered).
    bounds : ndarray (K + 1,)
        Chunk offsets.
    """

    aggregate: np.ndarray
    mean: np.ndarray
    stage1: list
    stage2: list
    bounds: np.ndarray


def _check_V(V) -> np.ndarray:
    V = np.asarray(V)
    if V.ndim != 2 or V.shape[0] < 1 or V.shape[1] < 1:
        raise ValueError(f"V must be a (K, d) array of the workers' vectors, got shape {V.shape}")
    if not np.issubdtype(V.dtype, np.floating) or not np.all(np.isfinite(V)):
        raise ValueError("V must hold finite floating-point values")
    return V


_CHUNKS: dict = {}  # (id(quantizer), d, K) -> (quantizer, its chunk quantizers): built once per quantizer


def chunk_quantizers(quantizer: BaseQuantizer, d: int, K: int) -> tuple[LayerwiseQuantizer, ...]:
    """The quantizer of each chunk message: chunk ``j``'s pieces of :func:`piece_quantizer` (cached for the
    same quantizer object, as quantizers cache their plans: a solver asks every round)."""
    key = (id(quantizer), d, K)
    hit = _CHUNKS.get(key)
    if hit is not None and hit[0] is quantizer:
        return hit[1]
    Q, chunk = piece_quantizer(quantizer, d, K)
    subs = tuple(_chunk_quantizer(Q, chunk, j) for j in range(_workers(K)))
    if len(_CHUNKS) >= 64:
        _CHUNKS.clear()
    _CHUNKS[key] = (quantizer, subs)
    return subs


def sra_aggregate(V, quantizer: BaseQuantizer, seed: int, round: int = 0) -> SRAResult:
    """The SRA aggregate of the workers' vectors ``V`` (shape ``(K, d)``) under ``quantizer``.

    Every message is one chunk under its own key (:func:`stage1_key`, :func:`stage2_key`); random
    addresses ``(piece in the chunk, index)``.
    The mean adds the workers' dequantized chunks in worker order in float64.
    """
    V = _check_V(V)
    K, d = V.shape
    subs = chunk_quantizers(quantizer, d, K)
    b = chunk_bounds(d, K)
    stage1 = [[subs[j].quantize(V[k, b[j]:b[j + 1]], stage1_key(seed, k, j, K, round)) for j in range(K)]
              for k in range(K)]  # fmt: skip
    mean = np.concatenate([dequantize_sum([stage1[k][j] for k in range(K)], K, engine=subs[j].engine)[0] / K
                           for j in range(K)])  # fmt: skip
    stage2 = [subs[j].quantize(mean[b[j] : b[j + 1]], stage2_key(seed, j, round)) for j in range(K)]
    aggregate = np.concatenate([q.dequantize(np.float64, engine=subs[0].engine) for q in stage2])
    return SRAResult(aggregate, mean, stage1, stage2, b)


def sra_variance(V, quantizer: BaseQuantizer, mean=None) -> dict:
    """Exact variance terms of SRA's aggregate (module docstring).

    Returns ``{"stage1": (1/K²) Σ_k E‖Q_1(g_k) − g_k‖², "stage2": E‖Q_2(s) − s‖² at the given ``mean``
    ``s`` (``None`` if not given), "allgather": (1/K²) Σ_k E‖Q(g_k) − g_k‖²}`` — the last with the
    unchunked ``quantizer``, the all-gather's variance for comparison.
    """
    V = _check_V(V)
    K, d = V.shape
    Q, _ = piece_quantizer(quantizer, d, K)
    out = {
        "stage1": sum(Q.exact_variance(V[k]) for k in range(K)) / K**2,
        "allgather": sum(quantizer.exact_variance(V[k]) for k in range(K)) / K**2,
        "stage2": None,
    }
    if mean is not None:
        out["stage2"] = Q.exact_variance(np.asarray(mean, np.float64))
    return out


def sra_bits(V, quantizer: BaseQuantizer, mean, protocol: str = "dense", code: str = "gamma") -> dict:
    """Exact expected bits of SRA's messages (each chunk a self-describing message).

    Returns ``{"stage1": (K, K) array, [k, j] = worker k's chunk j, "stage2": (K,) array (the owners'
    re-quantized chunks of ``mean``), "allgather": (K,) array (each worker's whole message under the
    unchunked ``quantizer``)}``.
    """
    V = _check_V(V)
    K, d = V.shape
    bounds = chunk_bounds(d, K)
    subs = chunk_quantizers(quantizer, d, K)
    mean = np.asarray(mean, np.float64)
    stage1 = np.array([[expected_bits(V[k, bounds[j]:bounds[j + 1]], subs[j], protocol, code)["total"]
                        for j in range(K)] for k in range(K)])  # fmt: skip
    stage2 = np.array([expected_bits(mean[bounds[j]:bounds[j + 1]], subs[j], protocol, code)["total"]
                       for j in range(K)])  # fmt: skip
    whole = np.array([expected_bits(V[k], quantizer, protocol, code)["total"] for k in range(K)])
    return {"stage1": stage1, "stage2": stage2, "allgather": whole}
