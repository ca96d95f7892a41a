"""The parts of a DDP bucket (private): which layers are quantized and which travel raw, one message
packed from them, and the bucket put back together — shared by the hook's all-gather
(:mod:`qodasim.torch.hook`) and its SRA (:mod:`qodasim.torch.sra`)."""

from __future__ import annotations

import numpy as np

from ..coding import Encoder, _payload
from ..coding.elias import code_id
from ..quantize import LayerLayout

#: The stream's bit fields a message records (with ``raw``, the float32 part's bits).
FIELDS = ("header", "level_tables", "norms", "payload", "padding")


def _split(state, layout: LayerLayout, raw: np.ndarray):
    """``(layout of the quantized layers or None, their coordinates or None for all, raw coordinates)``
    (cached per bucket layout)."""
    if state.scheme == "fp32":
        raw = np.ones(layout.n_layers, bool)
    key = (id(layout), raw.tobytes())
    hit = state._splits.get(key)
    if hit is not None and hit[0] is layout:
        return hit[1]
    q_layers, r_layers = np.flatnonzero(~raw), np.flatnonzero(raw)

    def coords(layers):
        return np.concatenate([np.arange(layout.offsets[l], layout.offsets[l + 1]) for l in layers])

    if q_layers.size == 0:
        out = (None, None, np.arange(layout.d))
    elif r_layers.size == 0:
        out = (layout, None, np.zeros(0, np.int64))
    else:
        names = tuple(layout.names[l] for l in q_layers)
        sub = LayerLayout(layout.sizes[q_layers], layout.types[q_layers], names=names, n_types=layout.n_types)
        out = (sub, coords(q_layers), coords(r_layers))
    state._splits[key] = (layout, out)
    return out


def _pack(state, channel, qv, raw_part) -> tuple[bytes, int, dict, np.ndarray]:
    """One message: the stream of the quantized part ``qv`` (``None``: none) from the channel's own
    encoder (its state persists: uniform level tables travel once per channel), then the raw part's
    float32 bytes.  Returns ``(data, nbits, head, q_bits)``: ``head`` counts :data:`FIELDS` and ``raw``
    (padding = the stream's bits up to its last byte), ``q_bits`` each quantized coordinate's payload
    bits (empty without ``qv``)."""
    data, nbits = b"", 0
    head = dict.fromkeys(FIELDS, 0)
    q_bits = np.zeros(0, np.int64)
    if qv is not None:
        msg = state._encoders.setdefault(channel, Encoder(code=state.code)).encode(qv)
        data, nbits = msg.data, msg.nbits
        head.update({k: msg.bits[k] for k in FIELDS if k in msg.bits})
        head["padding"] = 8 * len(msg.data) - msg.nbits
        table = _payload.dense_cost_table(int(max(lv.size for lv in qv.levels)) - 1, code_id(state.code))
        q_bits = table[qv.indices]
    n_raw = 0 if raw_part is None else int(np.size(raw_part))
    if n_raw:
        data += np.ascontiguousarray(raw_part, "<f4").tobytes()
        nbits += 32 * n_raw
    head["raw"] = 32 * n_raw
    return data, nbits, head, q_bits


def _assemble(d: int, idx, x, raw_idx: np.ndarray, raw_vals) -> np.ndarray:
    """A bucket as float64 from its parts: the quantized layers' values ``x`` at ``idx`` (``None``: all
    of the bucket; ``x`` ``None``: no quantized layer) and the raw layers' values at ``raw_idx``."""
    out = x if x is not None and idx is None else np.zeros(d, np.float64)
    if x is not None and idx is not None:
        out[idx] = x
    if raw_idx.size:
        out[raw_idx] = np.asarray(raw_vals, np.float64)
    return out
