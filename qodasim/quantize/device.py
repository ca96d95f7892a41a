"""Device-resident quantization of ``K`` workers' vectors for a whole solver run (GPU backend).

:class:`DeviceWorkspace` quantizes the ``B = R·K`` worker vectors of a solver step (``R`` replicas,
``K`` workers) on the GPU and keeps them there.  Its buffers — input vectors, level indices, signs,
task partials, per-replica worker sums, the tiled plan and the level tables — are allocated **once**
and reused by every call of a run.  Per call the host ↔ device traffic is

* up: the ``B × d`` oracle outputs (the problems' operators run on the host; nothing when they
  are already device arrays) and the stream bases (``O(B · segments)``);
* down: the float32 norms (``O(B · groups)``) and the ``R × d`` worker sums;

with one host synchronization per call: the norm pass is finished on the device (task partials
combined per group in the host's serial order, the float32 rounding and the segment scales), and
where every group is a single task (buckets, small layers) norm and rounding are one fused launch.
The quantized vectors leave the device only on request (:meth:`DeviceWorkspace.quantized`, used when
the solver writes real bit streams; :meth:`DeviceWorkspace.intervals` for exact expected bits).
Results are bit for bit those of the CPU engines for ``q ∈ {1, 2, ∞}``: the same lane order and
combiners as ``qodasim.quantize.norms.compute_norms``, the same counter-based uniforms, and the
worker sum adds workers in order ``Σ_k = ((x_0 + x_1) + x_2) + …`` like :func:`worker_sums` on the
CPU (for other ``q`` the device's ``pow`` may differ in the last ulp).

``DeviceWorkspace.stats`` counts bytes moved and device buffers allocated, so the residency
claim is tested, not assumed.
"""

from __future__ import annotations

import numpy as np

from ..rng import as_key
from ..validate import check_int
from ._numba import combine_max as _combine_max
from ._numba import combine_sum as _combine_sum
from .core import BaseQuantizer, batch_segment_bases, segment_scales
from .engine import get_engine
from .norms import compute_norms, round_up_to_float32
from .plan import LayerLayout, cached_tile
from .validation import check_norm_range
from .vector import QuantizedVector, worker_sums

__all__ = ["DeviceWorkspace", "worker_sums"]


def _positive_int(x, name: str) -> int:
    return check_int(x, name, 1, what="a positive integer")


def _is_device_array(cuda, x) -> bool:
    """A Numba device array (real or simulated) or any object with ``__cuda_array_interface__``."""
    return cuda.devicearray.is_cuda_ndarray(x) or hasattr(x, "__cuda_array_interface__")


class _DeviceVector:
    """A device vector seen from the host only if NumPy asks (``np.isfinite`` in an error path)."""

    def __init__(self, ws: DeviceWorkspace, dev):
        self._ws, self._dev = ws, dev

    def __array__(self, dtype=None, copy=None):
        host = self._ws._down(self._dev)
        return host if dtype is None else host.astype(dtype)


class DeviceWorkspace:
    """GPU buffers for quantizing ``R × K`` worker vectors of dimension ``d``, call after call.

    Parameters
    ----------
    quantizer : Quantizer or LayerwiseQuantizer
        Its levels, norm, buckets and layout; its ``engine`` setting is ignored (this is the GPU).
    d : int
        Dimension of each worker vector.
    n_workers : int
        ``K``.
    replicas : int, default 1
        ``R`` independent runs stacked (rows ``r·K + k``).
    layout : LayerLayout, optional
        Random-stream layout for a global quantizer (as in :meth:`Quantizer.quantize`).
    dtype : {numpy.float64, numpy.float32}
        dtype of the worker vectors.

    Raises
    ------
    ValueError
        Without a GPU (or the CUDA simulator), with the same message as ``engine="cuda"``.
    """

    def __init__(self, quantizer: BaseQuantizer, d: int, n_workers: int, replicas: int = 1,
                 layout: LayerLayout | None = None, dtype=np.float64):  # fmt: skip
        get_engine("cuda")  # raises the clear "no GPU" ValueError
        from numba import cuda

        from . import _cuda

        if not isinstance(quantizer, BaseQuantizer):
            raise TypeError(f"quantizer must be a Quantizer or LayerwiseQuantizer, got {type(quantizer).__name__}")
        self._cuda, self._K = cuda, _cuda
        self.d = _positive_int(d, "d")
        self.n_workers = _positive_int(n_workers, "n_workers")
        self.replicas = _positive_int(replicas, "replicas")
        if self.replicas > _cuda.MAX_GRID_Y:  # the worker-sum kernel runs one grid row per replica
            raise ValueError(f"replicas must be at most {_cuda.MAX_GRID_Y} (CUDA's grid y limit), got {replicas}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.layout = layout
        self.quantizer = quantizer
        self.plan = quantizer.plan(self.d, layout)
        self.B = self.replicas * self.n_workers
        self.tplan = cached_tile(self.plan, self.B)
        if self.tplan.task_start.size > _cuda.MAX_GRID_X:
            raise ValueError(f"replicas·n_workers·tasks = {self.tplan.task_start.size} blocks exceed CUDA's grid limit "
                             f"{_cuda.MAX_GRID_X}; use fewer replicas or larger buckets")  # fmt: skip
        self.stats = {"calls": 0, "h2d_bytes": 0, "d2h_bytes": 0, "device_allocations": 0, "device_bytes": 0}
        tp, rp = self.tplan, self.plan
        self._tp = {name: self._to_device(getattr(tp, name)) for name in ("task_start", "task_end", "task_seg",
                                                                         "seg_type", "seg_shift")}  # fmt: skip
        self._tp["task_group"] = self._to_device(tp.seg_group[tp.task_seg])
        self._rp = {name: self._to_device(getattr(rp, name)) for name in ("task_start", "task_end", "task_seg",
                                                                         "seg_group", "seg_type")}  # fmt: skip
        self._tables = [self._to_device(a) for a in quantizer._tables]
        n_tasks, n = tp.task_start.size, self.B * self.d
        self._v = None  # the upload buffer, allocated on the first host input (device input is read in place)
        self._idx = self._alloc(n, quantizer.index_dtype)
        self._sign = self._alloc(n, np.int8)
        self._mx, self._ss, self._pw = (self._alloc(n_tasks, np.float64) for _ in range(3))
        self._scale = self._alloc(tp.n_segments, np.float64)
        self._base = self._alloc(tp.n_segments, np.uint64)
        self._norms = self._alloc(tp.n_groups, np.float64)
        self._group_args = (self._alloc(tp.n_groups, np.float64), self._alloc(tp.n_groups, np.float64),
                            self._alloc(tp.n_groups, np.bool_))  # fmt: skip
        self._sums = self._alloc((self.replicas, self.d), np.float64)
        self._fused = None  # the fused kernel, when every group is one task (set by _norm_plan)
        self._device_norms = self._norm_plan()
        self._threads = _cuda.threads_for(tp)
        self._cur = None
        self._j = self._rho = None  # buffers of intervals(), allocated on first use
        self._n32: np.ndarray | None = None
        self._keys: list | None = None

    def _norm_plan(self) -> bool:
        """Device buffers for finishing the norm pass on the device, when every group's tasks are
        contiguous (then one thread per group sums them in the host's order); ``False`` otherwise."""
        tp = self.tplan
        tg = tp.seg_group[tp.task_seg]
        if tg.size == 0 or np.any(np.diff(tg) < 0):
            return False
        groups = np.arange(tp.n_groups)
        g_start, g_end = np.searchsorted(tg, groups, "left"), np.searchsorted(tg, groups, "right")
        self._g_start = self._to_device(g_start.astype(np.int64))
        self._g_end = self._to_device(g_end.astype(np.int64))
        self._gq = self._to_device(np.asarray(tp.group_q, np.float64))
        self._gmax, self._gss = self._alloc(tp.n_groups, np.float64), self._alloc(tp.n_groups, np.float64)
        self._gneed = self._alloc(tp.n_groups, np.bool_)
        self._n32dev = self._alloc(tp.n_groups, np.float32)
        self._tseg_group = self._to_device(tp.seg_group)
        K = self._K
        exact = K.exact_q(tp.group_q)
        self._powsum = K.task_scaled_powsum if exact else K.task_scaled_powsum_pow
        self._group_norms = K.group_norms_kernel if exact else K.group_norms_kernel_pow
        # every group one task (buckets, small layers): norm and rounding in one launch
        if np.all(g_end - g_start == 1):
            self._fused = K.fused_group_round if exact else K.fused_group_round_pow
        return True

    def _norms_on_device(self) -> None:
        """Norm pass, group norms, float32 rounding and segment scales, all on the device (no sync)."""
        K, t, tp = self._K, self._tp, self.tplan
        n, G, S = tp.task_start.size, tp.n_groups, tp.n_segments
        K.task_max_sumsq[n, K.LANES](self._cur, t["task_start"], t["task_end"], self._mx, self._ss)
        gb = (G + 127) // 128
        K.group_stats_kernel[gb, 128](self._mx, self._ss, self._g_start, self._g_end, self._gq, self._gmax,
                                      self._gss, self._gneed)  # fmt: skip
        self._powsum[n, K.LANES](self._cur, t["task_start"], t["task_end"], t["task_group"], self._gmax, self._gq,
                                 self._gneed, self._pw)  # fmt: skip
        self._group_norms[gb, 128](self._gmax, self._gss, self._pw, self._g_start, self._g_end, self._gq,
                                   self._gneed, self._n32dev, self._norms)  # fmt: skip
        K.segment_scales_kernel[(S + 127) // 128, 128](self._norms, self._tseg_group, t["seg_type"],
                                                       self._tables[2], self._scale)  # fmt: skip

    # -- transfers and allocations, counted -------------------------------------------------------
    def _alloc(self, shape, dtype):
        arr = self._cuda.device_array(shape, dtype)
        self.stats["device_allocations"] += 1
        self.stats["device_bytes"] += int(np.prod(shape)) * np.dtype(dtype).itemsize
        return arr

    def _to_device(self, host: np.ndarray):
        host = np.ascontiguousarray(host)
        arr = self._alloc(host.shape, host.dtype)
        self._up(arr, host)
        return arr

    def _up(self, dev, host: np.ndarray) -> None:
        dev.copy_to_device(np.ascontiguousarray(host))
        self.stats["h2d_bytes"] += host.nbytes

    def _down(self, dev) -> np.ndarray:
        host = dev.copy_to_host()
        self.stats["d2h_bytes"] += host.nbytes
        return host

    # -- the norm pass's interface (qodasim.quantize.engine.NormEngine), on the resident vectors ------
    #: The host combines the downloaded task partials with the CPU engines' serial combiners.
    combine_max, combine_sum = staticmethod(_combine_max), staticmethod(_combine_sum)

    def task_stats(self, v, plan):
        """Per task ``max |v_i|`` and ``Σ v_i²`` of the resident vectors (the engine interface of the norm pass)."""
        n = plan.task_start.size
        self._K.task_max_sumsq[n, self._K.LANES](self._cur, self._tp["task_start"], self._tp["task_end"], self._mx,
                                                 self._ss)  # fmt: skip
        return self._down(self._mx), self._down(self._ss)

    def task_powsum(self, v, plan, scale, q, need):
        """Per task ``Σ (|v_i|/scale_g)^{q_g}`` of the resident vectors (the engine interface of the norm pass)."""
        K = self._K
        for dev, host in zip(self._group_args, (scale, q, need)):
            self._up(dev, host)
        t = self._tp
        K.powsum_kernel(q, need)[plan.task_start.size, K.LANES](
            self._cur, t["task_start"], t["task_end"], t["task_group"], *self._group_args, self._pw
        )
        return self._down(self._pw)

    # -- public API ---------------------------------------------------------------------------------
    def set_quantizer(self, quantizer: BaseQuantizer) -> None:
        """Switch to new levels for the same plan (e.g. after level re-optimization); no reallocation.

        Raises ``ValueError`` if the new quantizer's plan, index dtype or level-table sizes differ.
        """
        if not isinstance(quantizer, BaseQuantizer):
            raise TypeError(f"quantizer must be a Quantizer or LayerwiseQuantizer, got {type(quantizer).__name__}")
        plan = quantizer.plan(self.d, self.layout)
        tables = quantizer._tables
        if (plan.spec != self.plan.spec or quantizer.index_dtype != self.quantizer.index_dtype
                or any(t.shape != d.shape for t, d in zip(tables, self._tables))):  # fmt: skip
            raise ValueError("set_quantizer: the new quantizer needs another plan or level-table size; "
                             "build a new DeviceWorkspace")  # fmt: skip
        for dev, host in zip(self._tables, tables):
            self._up(dev, host)
        self.quantizer = quantizer

    def quantize(self, V, keys) -> np.ndarray:
        """Quantize ``V`` (shape ``(R·K, d)``, row ``r·K + k``) with one key per row.

        ``V`` is a host array (uploaded into the resident buffer, allocated on first use) or a
        C-contiguous CUDA device array (anything with ``__cuda_array_interface__``; read in place,
        nothing is copied or allocated for it).  Returns the float32 norms (``(R·K)·groups``, row after
        row) once the kernels that read ``V`` have finished (so the caller may overwrite ``V`` on any
        stream); indices and signs stay on the device.
        """
        self._n32 = None  # an error below leaves nothing half-quantized behind
        on_device = _is_device_array(self._cuda, V)
        flat, keys = self._take(V, keys, on_device)
        tp = self.tplan
        lv, lv_start, type_uni = self._tables
        t = self._tp
        if self._device_norms and self._fused is not None:  # one launch: norms, scales, rounding
            self._up(self._base, batch_segment_bases(self.plan, keys))
            self._fused[tp.task_start.size, self._threads](
                self._cur, t["task_start"], t["task_end"], t["task_seg"], t["seg_type"], self._base, t["seg_shift"],
                self._gq, lv, lv_start, type_uni, self._n32dev, self._norms, self._scale, self._idx, self._sign,
            )  # fmt: skip
        elif self._device_norms:  # norms, scales and rounding queued on the device; one download below
            self._up(self._base, batch_segment_bases(self.plan, keys))
            self._norms_on_device()
        else:  # the host combines the task partials (kept for plans whose groups are not contiguous)
            n32 = round_up_to_float32(compute_norms(flat, tp, self))
            check_norm_range(n32, "V")
            self._up(self._scale, segment_scales(tp, n32, self.quantizer._tables[2]))
            self._up(self._base, batch_segment_bases(self.plan, keys))
            self._up(self._norms, n32.astype(np.float64))
        if self._fused is None or not self._device_norms:
            self._K.round_kernel[tp.task_start.size, self._threads](
                self._cur, self._scale, t["seg_type"], self._base, t["seg_shift"], t["task_start"], t["task_end"],
                t["task_seg"], lv, lv_start, type_uni, self._idx, self._sign,
            )  # fmt: skip
        if self._device_norms:
            n32 = self._down(self._n32dev)  # the one synchronization of a call
            if not np.all(np.isfinite(n32)) and not np.all(np.isfinite(np.asarray(flat))):
                raise ValueError("V contains NaN or Inf")
            check_norm_range(n32, "V")
        elif on_device:  # the caller may reuse V as soon as this returns (on any stream): wait for the reads
            self._cuda.synchronize()
        self._n32, self._keys = n32, keys
        self.stats["calls"] += 1
        return n32

    def _take(self, V, keys, on_device: bool):
        """``(flat V, keys)`` checked, with ``self._cur`` the device vector the kernels read: a device
        ``V`` in place, a host ``V`` uploaded into the resident buffer (allocated on first use)."""
        if not on_device:
            V = np.asarray(V)
        elif not self._cuda.devicearray.is_cuda_ndarray(V):
            V = self._cuda.as_cuda_array(V)
        self._check_vectors(V.shape, V.dtype)
        keys = [as_key(k) for k in keys]
        if len(keys) != self.B:
            raise ValueError(f"keys has {len(keys)} entries but V has {self.B} rows")
        if on_device:
            if not V.is_c_contiguous():
                raise ValueError("V (device array) must be C-contiguous")
            self._cur = V.reshape(self.B * self.d)
            return _DeviceVector(self, self._cur), keys  # downloaded only to name a NaN/Inf in an error
        flat = np.ascontiguousarray(V).reshape(-1)
        if self._v is None:
            self._v = self._alloc(self.B * self.d, self.dtype)
        self._up(self._v, flat)
        self._cur = self._v
        return flat, keys

    def _check_vectors(self, shape, dtype) -> None:
        if tuple(shape) != (self.B, self.d):
            raise ValueError(f"V must have shape {(self.B, self.d)}, got {tuple(shape)}")
        if np.dtype(dtype) != self.dtype:
            raise TypeError(f"V must have dtype {self.dtype}, got {np.dtype(dtype)}")

    def worker_sums(self) -> np.ndarray:
        """``Σ_k Q(v_{r,k})`` per replica, shape ``(R, d)`` float64, from the last :meth:`quantize`.

        Dequantized and summed on the device in worker order (see :func:`worker_sums`); only the
        ``R × d`` result is transferred.
        """
        self._require_quantized()
        r = self._rp
        lv, lv_start, _ = self._tables
        self._K.mean_dequantize_kernel[(self.plan.task_start.size, self.replicas), self._K.threads_for(self.plan)](
            self._idx, self._sign, self._norms, r["seg_group"], r["seg_type"], r["task_start"], r["task_end"],
            r["task_seg"], lv, lv_start, self.n_workers, self.plan.n_groups, self._sums,
        )  # fmt: skip
        return self._down(self._sums)

    def intervals(self) -> tuple[np.ndarray, np.ndarray]:
        """``(j, ρ)`` of every coordinate of the last :meth:`quantize`, shape ``(R·K, d)`` each.

        Computed on the device from the resident vectors and the segment scales of that call (no
        upload, no second norm pass; a device ``V`` must not have changed since); the host receives
        ``16·R·K·d`` bytes.  Equal, bit for bit, to
        each row's :meth:`~qodasim.quantize.Quantizer.intervals` on the CPU.
        """
        self._require_quantized()
        if self._j is None:
            n = self.B * self.d
            self._j, self._rho = self._alloc(n, np.int64), self._alloc(n, np.float64)
        t = self._tp
        lv, lv_start, type_uni = self._tables
        self._K.interval_kernel[self.tplan.task_start.size, self._threads](
            self._cur, self._scale, t["seg_type"], t["task_start"], t["task_end"], t["task_seg"], lv, lv_start,
            type_uni, self._j, self._rho,
        )  # fmt: skip
        return self._down(self._j).reshape(self.B, self.d), self._down(self._rho).reshape(self.B, self.d)

    def quantized(self) -> list[QuantizedVector]:
        """Host copies of the last call's ``R·K`` quantized vectors (for encoding real bit streams)."""
        self._require_quantized()
        idx, sign = self._down(self._idx), self._down(self._sign)
        d, G, q = self.d, self.plan.n_groups, self.quantizer
        return [
            QuantizedVector._trusted(idx[b * d : (b + 1) * d], sign[b * d : (b + 1) * d],
                                     self._n32[b * G : (b + 1) * G], self.plan, q.type_levels, self.dtype,
                                     self._keys[b])
            for b in range(self.B)
        ]  # fmt: skip

    def _require_quantized(self) -> None:
        if self._n32 is None:
            raise ValueError("nothing quantized yet: call DeviceWorkspace.quantize first")
