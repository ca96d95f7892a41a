"""GPU quantize throughput (needs a GPU; run it where the device tool lends one).

d = 2^28 float32, L2, 16 uniform levels: the CUDA kernels (norm pass + rounding pass) on device
arrays, against the device's own device-to-device copy of the same array, and against the CPU
engine (Numba) on the same vector — all measured in the same run.  Target: ≥ 0.5× the copy.
``--quick``: d = 2^24.  Exits with a clear message where no GPU is available.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, report  # noqa: E402


def main() -> None:
    args = parser(__doc__).parse_args()
    from qodasim.quantize.core import cuda_available

    if not cuda_available():
        sys.exit("benchmarks/gpu.py: no GPU here (numba.cuda.is_available() is False)")
    from numba import cuda

    from qodasim import Key, Levels, Quantizer
    from qodasim.quantize import _cuda as K
    from qodasim.quantize.core import round_up_to_float32, segment_bases, segment_scales

    d = 2**24 if args.quick else 2**28
    repeats = args.repeats or 10
    v = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    quant = Quantizer(Levels.uniform(15))
    plan = quant.plan(d)
    lv, lv_start, type_uni = quant._tables
    dv = cuda.to_device(v)
    dst = cuda.device_array_like(dv)
    ts, te, tseg = (cuda.to_device(a) for a in (plan.task_start, plan.task_end, plan.task_seg))
    n_tasks = plan.task_start.size
    mx, ss = cuda.device_array(n_tasks), cuda.device_array(n_tasks)
    idx, sign = cuda.device_array(d, np.uint8), cuda.device_array(d, np.int8)
    seg_type, dlv, dls, dtu = (cuda.to_device(a) for a in (plan.seg_type, lv, lv_start, type_uni))
    shift = cuda.to_device(plan.seg_shift)
    base = cuda.to_device(segment_bases(plan, Key(1)))
    threads = K.threads_for(plan)

    def gpu_quantize():
        K.task_max_sumsq[n_tasks, K.LANES](dv, ts, te, mx, ss)
        norm = np.sqrt(ss.copy_to_host().sum())  # host combine of the task partials (tiny)
        n32 = round_up_to_float32(np.array([norm]))
        scale = cuda.to_device(segment_scales(plan, n32, type_uni))
        K.round_kernel[n_tasks, threads](dv, scale, seg_type, base, shift, ts, te, tseg, dlv, dls, dtu, idx, sign)
        cuda.synchronize()

    def timed(fn):
        fn()
        cuda.synchronize()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return best

    t_gpu = timed(gpu_quantize)
    t_copy = timed(lambda: dst.copy_to_device(dv))
    t0 = time.perf_counter()
    quant.quantize(v, Key(1))
    quant.quantize(v, Key(1))
    t_cpu = (time.perf_counter() - t0) / 2
    ok = np.array_equal(idx.copy_to_host(), quant.quantize(v, Key(1)).indices)
    rows = [
        ("d", float(d), "coordinates"),
        ("gpu_quantize_coords_per_s", d / t_gpu, "coord/s"),
        ("device_copy_coords_per_s", d / t_copy, "coord/s"),
        ("gpu_over_device_copy", t_copy / t_gpu, "x (target >= 0.5)"),
        ("cpu_quantize_coords_per_s", d / t_cpu, "coord/s (numba engine)"),
        ("gpu_over_cpu", t_cpu / t_gpu, "x"),
        ("gpu_equals_cpu", float(ok), "1 = identical indices"),
    ]
    name = cuda.get_current_device().name
    report("gpu", rows, {"quick": args.quick, "device": name.decode() if isinstance(name, bytes) else str(name)})


if __name__ == "__main__":
    main()
