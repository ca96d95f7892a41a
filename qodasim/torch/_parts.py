"""The parts of a DDP bucket (private): which layers are quantized and which travel raw, and the bucket
put back together from them — shared by the hook's all-gather (:mod:`qodasim.torch.hook`) and its SRA
(:mod:`qodasim.torch.sra`)."""

from __future__ import annotations

import numpy as np

from ..quantize import LayerLayout


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


def _assemble(d: int, idx, x, raw_idx: np.ndarray, raw_vals) -> np.ndarray:
    """A bucket as float64 from its parts: the quantized layers' values ``x`` at ``idx`` (``None``: all
    of the bucket; ``x`` ``None``: no quantized layer) and the raw layers' values at ``raw_idx``."""
    out = x if x is not None and idx is None else np.zeros(d, np.float64)
    if x is not None and idx is not None:
        out[idx] = x
    if raw_idx.size:
        out[raw_idx] = np.asarray(raw_vals, np.float64)
    return out
