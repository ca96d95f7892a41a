"""Quantization plans: how a vector is cut into norm groups and RNG segments.

A :class:`~qodasim.quantize.layers.LayerLayout` (:mod:`qodasim.quantize.layers`) names the layers of a
vector (sizes) and maps each to one of ``M`` types (THEORY §1, layer-wise quantizer).  A :class:`Plan`
is what kernels consume: the vector is cut into
*segments*, each lying inside one layer and one norm group, carrying

* its level table (the type of its layer),
* its norm group (a bucket, a layer, or the whole vector, by normalization scope),
* its random-stream address ``(layer, index-in-layer of its first coordinate)``.

Plans are pure functions of the layout and quantizer configuration, and are cached per quantizer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .layers import LayerLayout

__all__ = ["LayerLayout", "Plan", "PlanSpec", "build_plan", "tile_plan", "CHUNK"]

#: Work unit (coordinates) of the parallel kernels.  Tasks are cut at multiples of CHUNK inside
#: each segment, independent of the thread count, so reductions are bit-for-bit reproducible.
CHUNK = 16384


@dataclass(frozen=True)
class PlanSpec:
    """Everything a plan is built from (what a message header carries to rebuild it).

    Attributes
    ----------
    layout : LayerLayout
    scope : {"global", "layer"}
    type_q : tuple of float
        Norm order per type.
    type_bucket : tuple of int
        Bucket size per type (0 for none; ``scope="layer"`` only).
    global_bucket : int
        Bucket size across the whole vector (0 for none; ``scope="global"`` only).
    """

    layout: LayerLayout
    scope: str
    type_q: tuple
    type_bucket: tuple
    global_bucket: int = 0


@dataclass(frozen=True, eq=False)
class Plan:
    """Segmentation of a vector for the quantization kernels (all arrays int64 unless noted).

    Attributes
    ----------
    d : int
        Dimension.
    group_bounds : (G+1,) array
        Norm group ``g`` covers coordinates ``[group_bounds[g], group_bounds[g+1])``.
    group_q : (G,) float64
        Norm order ``q`` of each group (``np.inf`` allowed).
    seg_bounds : (S+1,) array
        Segment ``s`` covers ``[seg_bounds[s], seg_bounds[s+1])``; segments refine groups and layers.
    seg_group, seg_type, seg_layer, seg_offset : (S,) arrays
        Norm group, level type, layer id and index-in-layer of the first coordinate of each segment.
    task_start, task_end, task_seg : arrays
        Parallel work units: chunks of at most ``CHUNK`` (2^14) coordinates inside one segment.
    layout : LayerLayout
        The layout the plan was built from.
    scope : str
        ``"global"``, ``"layer"`` or ``"bucket"``: what one norm covers.
    spec : PlanSpec
        The parameters the plan was built from.
    """

    d: int
    group_bounds: np.ndarray
    group_q: np.ndarray
    seg_bounds: np.ndarray
    seg_group: np.ndarray
    seg_type: np.ndarray
    seg_layer: np.ndarray
    seg_offset: np.ndarray
    task_start: np.ndarray
    task_end: np.ndarray
    task_seg: np.ndarray
    layout: LayerLayout
    scope: str
    spec: PlanSpec

    @property
    def n_groups(self) -> int:
        """Number of norm groups (one float32 norm each: layers, buckets or the whole vector)."""
        return int(self.group_bounds.size - 1)

    @property
    def n_segments(self) -> int:
        """Number of segments (maximal runs of coordinates with one group, one type and one layer)."""
        return int(self.seg_bounds.size - 1)

    @functools.cached_property
    def seg_shift(self) -> np.ndarray:
        """``index-in-layer − global index`` per segment: coordinate ``i`` of segment ``s`` has stream
        index ``i + seg_shift[s]`` (what the rounding kernels add)."""
        out = (self.seg_offset - self.seg_bounds[:-1]).astype(np.int64)
        out.setflags(write=False)
        return out

    def coord_group(self) -> np.ndarray:
        """Norm group of every coordinate (length ``d``)."""
        return np.repeat(np.arange(self.n_groups), np.diff(self.group_bounds))

    def coord_type(self) -> np.ndarray:
        """Level type of every coordinate."""
        return np.repeat(self.seg_type, np.diff(self.seg_bounds))

    def coord_address(self) -> tuple[np.ndarray, np.ndarray]:
        """``(layer, index-in-layer)`` of every coordinate: its random-stream address."""
        lens = np.diff(self.seg_bounds)
        layer = np.repeat(self.seg_layer, lens)
        idx = np.arange(self.d, dtype=np.int64) - np.repeat(self.seg_bounds[:-1] - self.seg_offset, lens)
        return layer, idx


def _chunk_tasks(bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each range ``[bounds[s], bounds[s+1])`` into chunks of at most CHUNK coordinates."""
    lens = np.diff(bounds)
    counts = np.maximum(1, -(-lens // CHUNK))
    owner = np.repeat(np.arange(lens.size, dtype=np.int64), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k = np.arange(owner.size, dtype=np.int64) - np.repeat(first, counts)
    start = bounds[:-1][owner] + k * CHUNK
    end = np.minimum(start + CHUNK, bounds[1:][owner])
    return start.astype(np.int64), end.astype(np.int64), owner


def build_plan(spec: PlanSpec) -> Plan:
    """Build the :class:`Plan` of ``spec``.

    Parameters (fields of ``spec``)
    -------------------------------
    scope : {"global", "layer"}
        ``"global"``: one norm for the vector, or one per ``global_bucket`` consecutive coordinates
        across layer boundaries.  ``"layer"``: one norm per layer, or per bucket of the layer's type's
        bucket size inside each layer (``type_bucket[m] = 0`` means no buckets).
    type_q : (M,) float64
        Norm order per type.
    type_bucket : (M,) int64
        Bucket size per type (0 for none); only for ``scope="layer"``.
    """
    layout, scope, global_bucket = spec.layout, spec.scope, spec.global_bucket
    type_q = np.asarray(spec.type_q, np.float64)
    type_bucket = np.asarray(spec.type_bucket, np.int64)
    if type_q.size != layout.n_types or type_bucket.size != layout.n_types:
        raise ValueError(f"type_q and type_bucket need {layout.n_types} entries (one per type)")
    d = layout.d
    lb = layout.offsets
    if scope == "global":
        if global_bucket:
            gb = np.unique(np.concatenate([np.arange(0, d, global_bucket, dtype=np.int64), [d]]))
        else:
            gb = np.array([0, d], np.int64)
        label = "bucket" if global_bucket and global_bucket < d else "global"
    elif scope == "layer":
        parts = [np.array([0], np.int64)]
        any_bucket = False
        for l in range(layout.n_layers):
            b = int(type_bucket[layout.types[l]])
            start, stop = int(lb[l]), int(lb[l + 1])
            if b > 0:
                any_bucket |= b < stop - start
                cuts = np.arange(start + b, stop, b, dtype=np.int64)
                parts.append(cuts)
            parts.append(np.array([stop], np.int64))
        gb = np.concatenate(parts)
        label = "bucket" if any_bucket else "layer"
    else:
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    sb = np.union1d(gb, lb).astype(np.int64)
    seg_start = sb[:-1]
    seg_layer = (np.searchsorted(lb, seg_start, side="right") - 1).astype(np.int64)
    seg_group = (np.searchsorted(gb, seg_start, side="right") - 1).astype(np.int64)
    seg_type = layout.types[seg_layer].astype(np.int64)
    seg_offset = (seg_start - lb[seg_layer]).astype(np.int64)
    # q of a group: the q of the type of its first segment; a group may not mix orders
    group_q = np.empty(gb.size - 1, np.float64)
    seg_q = np.asarray(type_q, np.float64)[seg_type]
    first_seg = np.searchsorted(sb, gb[:-1])
    group_q[:] = seg_q[first_seg]
    if np.any(seg_q != group_q[seg_group]):
        raise ValueError("q: all types sharing one norm (scope='global') must use the same norm order q")
    ts, te, tseg = _chunk_tasks(sb)
    arrays = (gb, group_q, sb, seg_group, seg_type, seg_layer, seg_offset, ts, te, tseg)
    for a in arrays:
        a.setflags(write=False)
    return Plan(d, gb, group_q, sb, seg_group, seg_type, seg_layer, seg_offset, ts, te, tseg, layout, label, spec)


def tile_plan(plan: Plan, rows: int) -> Plan:
    """The plan of ``rows`` stacked copies of a vector (a batch flattened row after row).

    Segments, groups and tasks are the per-row ones shifted by ``row·d``, so every reduction and
    rounding decision is the same as for each row on its own; segment ``s`` of row ``r`` is segment
    ``r·S + s``.
    """
    if rows < 1:
        raise ValueError("rows must be >= 1")
    d, G, S = plan.d, plan.n_groups, plan.n_segments
    r = np.arange(rows, dtype=np.int64)

    def bounds(b):
        return np.concatenate([(b[:-1][None, :] + d * r[:, None]).ravel(), [rows * d]]).astype(np.int64)

    def shift(a, by):
        return (a[None, :] + by * r[:, None]).ravel().astype(a.dtype)

    def tile(a):
        return np.tile(a, rows)

    arrays = dict(
        group_bounds=bounds(plan.group_bounds), group_q=tile(plan.group_q), seg_bounds=bounds(plan.seg_bounds),
        seg_group=shift(plan.seg_group, G), seg_type=tile(plan.seg_type), seg_layer=tile(plan.seg_layer),
        seg_offset=tile(plan.seg_offset), task_start=shift(plan.task_start, d), task_end=shift(plan.task_end, d),
        task_seg=shift(plan.task_seg, S),
    )  # fmt: skip
    for a in arrays.values():
        a.setflags(write=False)
    return Plan(rows * d, layout=plan.layout, scope=plan.scope, spec=plan.spec, **arrays)


@functools.lru_cache(maxsize=64)
def cached_tile(plan: Plan, rows: int) -> Plan:
    """:func:`tile_plan` of ``(plan, rows)``, built once per distinct pair (the batches of a run)."""
    return tile_plan(plan, rows)


@functools.lru_cache(maxsize=256)
def cached_plan(spec: PlanSpec) -> Plan:
    """The plan of ``spec`` (built once per distinct spec)."""
    return build_plan(spec)
