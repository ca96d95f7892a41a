"""The hook's compressed scatter-reduce-allgather (SRA): the collective of the paper's system (CGX).

With ``QuantizeState(collective="sra")`` a bucket of ``d`` coordinates travels as in
:mod:`qodasim.solvers.sra` (THEORY §8), on ``K`` ranks:

1. **Stage 1** — rank ``k`` cuts the bucket's quantized part into ``K`` chunks ``[⌊jd/K⌋, ⌊(j+1)d/K⌋)``,
   quantizes chunk ``j`` with one norm per piece (layer ∩ chunk) and the key
   :func:`~qodasim.solvers.sra.stage1_key` ``(seed, k, j, K, round)`` and sends its stream to rank
   ``j`` (a variable-length all-to-all).  Excluded layers' coordinates (raw float32) are cut into
   ``K`` chunks too and appended to the chunk's message.
2. **Reduce** — rank ``j`` decodes the ``K − 1`` chunks it received, adds them and its own in rank
   order in float64 and divides by ``K``.
3. **Stage 2** — rank ``j`` re-quantizes that mean chunk with the key
   :func:`~qodasim.solvers.sra.stage2_key` ``(seed, j, round)`` (the raw part rounded to float32)
   and all-gathers it; every rank decodes the ``K`` chunks and holds the same bucket.

``round = step · 2^16 + bucket`` as for the all-gather.  The result equals
:func:`qodasim.solvers.sra.sra_aggregate` of the ranks' quantized parts, and the raw part the
all-gather's average, bit for bit (:func:`replay_sra`, tested).  A bucket whose quantized part has
fewer than ``K`` coordinates (so that some rank would own no chunk) is sent by the all-gather
instead.  The three steps are plain functions of the bytes each rank holds, so a test can run ``K``
ranks in one process; :func:`qodasim.torch.hook` runs them over ``torch.distributed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..coding import Decoder
from ..quantize import LayerLayout
from ..solvers.sra import chunk_bounds, chunk_quantizers, sra_aggregate, stage1_key, stage2_key
from ._parts import FIELDS as _FIELDS
from ._parts import _assemble, _pack, _split

__all__ = ["SRAPlan", "sra_plan", "stage1", "reduce_stage", "assemble", "replay_sra"]


@dataclass(frozen=True)
class SRAPlan:
    """How one bucket's coordinates are cut into ``K`` chunks (built once per bucket layout and ``K``).

    Attributes
    ----------
    K : int
        Ranks.
    d : int
        Coordinates of the bucket.
    sub : LayerLayout or None
        The layout of the bucket's quantized layers (``None``: every layer is sent raw).
    idx, raw_idx : ndarray or None
        The bucket's coordinates of the quantized layers (``None``: all of them) and of the raw ones.
    chunk_q : tuple of LayerwiseQuantizer
        Chunk ``j``'s quantizer (empty when no layer is quantized).
    qb, rb : ndarray (K + 1,)
        Chunk bounds in the quantized part and in the raw part (the raw chunks may be empty).
    q_layer, r_layer : ndarray
        The bucket layer of every quantized and every raw coordinate (for the per-layer ledger).
    names : tuple of str
        The bucket's layer names.
    """

    K: int
    d: int
    sub: LayerLayout | None
    idx: np.ndarray | None
    raw_idx: np.ndarray
    chunk_q: tuple
    qb: np.ndarray
    rb: np.ndarray
    q_layer: np.ndarray
    r_layer: np.ndarray
    names: tuple


def sra_plan(state, layout: LayerLayout, raw: np.ndarray, K: int, engine: str = "numba") -> SRAPlan | None:
    """The bucket's SRA plan for ``K`` ranks, or ``None`` when its quantized part has fewer than ``K``
    coordinates (the hook then uses the all-gather for it); cached on ``state``."""
    key = (id(layout), np.asarray(raw, bool).tobytes(), int(K), engine)
    hit = state._sra_plans.get(key)
    if hit is not None and hit[0] is layout:
        return hit[1]
    sub, idx, raw_idx = _split(state, layout, np.asarray(raw, bool))
    layer_of = np.repeat(np.arange(layout.n_layers), layout.sizes)
    n_q = 0 if sub is None else sub.d
    plan = None
    if sub is None or n_q >= K:
        chunk_q = () if sub is None else chunk_quantizers(state.quantizer(sub, engine), n_q, K)
        qb = np.zeros(K + 1, np.int64) if sub is None else chunk_bounds(n_q, K)
        q_coords = np.zeros(0, np.int64) if sub is None else (np.arange(layout.d) if idx is None else idx)
        plan = SRAPlan(K=int(K), d=layout.d, sub=sub, idx=idx, raw_idx=raw_idx, chunk_q=chunk_q, qb=qb,
                       rb=np.arange(K + 1, dtype=np.int64) * raw_idx.size // K, q_layer=layer_of[q_coords],
                       r_layer=layer_of[raw_idx], names=tuple(layout.names))  # fmt: skip
    state._sra_plans[key] = (layout, plan)
    return plan


@dataclass
class _Sent:
    """What one rank sent in one bucket's SRA: the bits of every message (by field), per layer."""

    bits: int = 0
    nbytes: int = 0
    fields: dict | None = None
    layer_bits: np.ndarray | None = None
    layer_coords: np.ndarray | None = None

    def add(self, data: bytes, nbits: int, head: dict, plan: SRAPlan, q_sel, q_bits, r_sel) -> None:
        """Count one message: ``nbits`` bits in ``data``; its quantized coordinates ``q_sel`` (a slice
        of the quantized part) cost ``q_bits`` payload bits each, its raw ones ``r_sel`` 32."""
        n_layers = len(plan.names)
        if self.fields is None:
            self.fields = dict.fromkeys((*_FIELDS, "raw"), 0)
            self.layer_bits = np.zeros(n_layers, np.int64)
            self.layer_coords = np.zeros(n_layers, np.int64)
        self.bits += nbits
        self.nbytes += len(data)
        for k, v in head.items():
            self.fields[k] += int(v)
        ql, rl = plan.q_layer[q_sel], plan.r_layer[r_sel]
        self.layer_bits += np.bincount(ql, weights=q_bits, minlength=n_layers).astype(np.int64)
        self.layer_bits += 32 * np.bincount(rl, minlength=n_layers)
        self.layer_coords += np.bincount(ql, minlength=n_layers) + np.bincount(rl, minlength=n_layers)


def _message(state, plan: SRAPlan, qv, raw_part: np.ndarray, channel, sel: slice, rsel: slice, sent: _Sent):
    """One chunk's message (stream of the quantized chunk ``qv``, then the raw float32 bytes), counted."""
    data, nbits, head, q_bits = _pack(state, channel, qv, raw_part)
    sent.add(data, nbits, head, plan, sel, q_bits.astype(np.float64), rsel)
    return data


def _read(state, plan: SRAPlan, data: bytes, j: int, channel, key) -> tuple[np.ndarray | None, np.ndarray]:
    """Chunk ``j``'s quantized part (float64, or ``None``) and raw part (float32) from a message."""
    n_raw = int(plan.rb[j + 1] - plan.rb[j])
    x = None
    if plan.chunk_q:
        size = int(plan.qb[j + 1] - plan.qb[j])
        dec = state._decoders.setdefault(channel, Decoder(max_d=max(size, 1)))
        x = dec.decode(data[: len(data) - 4 * n_raw], key).dequantize(np.float64)
    return x, np.frombuffer(data[len(data) - 4 * n_raw :], "<f4")


def stage1(state, plan: SRAPlan, flat: np.ndarray, rank: int, bucket: int, round: int):
    """Rank ``rank``'s stage-1 messages (``K`` bytes objects; its own chunk's is empty: it stays home),
    its own chunk (quantized part dequantized, raw part) and the count of what it sent."""
    K = plan.K
    q = flat if plan.idx is None else flat[plan.idx]
    r = flat[plan.raw_idx]
    sent = _Sent()
    out, own = [], None
    for j in range(K):
        sel, rsel = slice(plan.qb[j], plan.qb[j + 1]), slice(plan.rb[j], plan.rb[j + 1])
        qv = None
        if plan.chunk_q:
            qv = plan.chunk_q[j].quantize(q[sel], stage1_key(state.seed, rank, j, K, round))
        if j == rank:
            own = (None if qv is None else qv.dequantize(np.float64), np.asarray(r[rsel], np.float32))
            out.append(b"")
        else:
            out.append(_message(state, plan, qv, r[rsel], (bucket, "sra1", j), sel, rsel, sent))
    return out, own, sent


def reduce_stage(state, plan: SRAPlan, received: list, own, rank: int, bucket: int, round: int, sent: _Sent):
    """Rank ``rank`` (the owner of chunk ``rank``): the mean of the ``K`` chunks (``received[k]`` from
    rank ``k``; its own ``own``), re-quantized; returns the stage-2 message and the chunk every rank
    will decode from it."""
    K, j = plan.K, rank
    sq = sr = None
    for k in range(K):  # rank order: the same sum as the simulation's
        x, raw = own if k == rank else _read(state, plan, received[k], j, (bucket, "sra1", k),
                                             stage1_key(state.seed, k, j, K, round))  # fmt: skip
        raw = raw.astype(np.float64)
        sq = x if sq is None else sq + x
        sr = raw if sr is None else sr + raw
    sr = (sr / K).astype(np.float32)
    qv = None
    if plan.chunk_q:
        qv = plan.chunk_q[j].quantize(sq / K, stage2_key(state.seed, j, round))
    sel, rsel = slice(plan.qb[j], plan.qb[j + 1]), slice(plan.rb[j], plan.rb[j + 1])
    data = _message(state, plan, qv, sr, (bucket, "sra2"), sel, rsel, sent)
    return data, (None if qv is None else qv.dequantize(np.float64), sr)


def assemble(state, plan: SRAPlan, gathered: list, own, rank: int, bucket: int, round: int) -> np.ndarray:
    """The bucket (float64) from the ``K`` owners' stage-2 messages (``own``: this rank's chunk)."""
    qs, rs = [], []
    for j in range(plan.K):
        x, raw = own if j == rank else _read(state, plan, gathered[j], j, (bucket, "sra2", j),
                                             stage2_key(state.seed, j, round))  # fmt: skip
        qs.append(x)
        rs.append(raw)
    return _assemble(plan.d, plan.idx, np.concatenate(qs) if plan.chunk_q else None, plan.raw_idx, np.concatenate(rs))


def replay_sra(state, plan: SRAPlan, grads_by_rank, round: int) -> np.ndarray:
    """The bucket :func:`stage1` → :func:`reduce_stage` → :func:`assemble` give, in one process and
    without streams: :func:`~qodasim.solvers.sra.sra_aggregate` of the ranks' quantized parts (its
    chunk quantizers are the plan's) and the raw parts' float64 mean in rank order, rounded to float32."""
    G = np.asarray(grads_by_rank, np.float32)
    x = None
    if plan.chunk_q:
        Vq = G if plan.idx is None else G[:, plan.idx]
        q = state.quantizer(plan.sub, plan.chunk_q[0].engine)
        x = sra_aggregate(Vq, q, state.seed, round).aggregate
    sr = None
    for g in G[:, plan.raw_idx].astype(np.float64):
        sr = g if sr is None else sr + g
    raw = (sr / len(G)).astype(np.float32) if sr is not None else np.zeros(0, np.float32)
    return _assemble(plan.d, plan.idx, x, plan.raw_idx, raw)
