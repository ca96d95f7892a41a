"""GPU quantize throughput (needs a GPU; run it where the device tool lends one).

1. d = 2^28 float32, L2, 16 uniform levels, the vector already on the device: the CUDA kernels
   (norm pass, host combine of the task partials, rounding pass) through
   :class:`~qodasim.quantize.device.DeviceWorkspace`, against the device's own device-to-device
   copy of the same array and against the CPU engine (Numba) — all in the same run.  Target:
   ≥ 0.5× the copy.  The GPU's indices must equal the CPU's.
2. One solver oracle step: K = 16 workers' float64 vectors of d = 2^22 / 16 each from the host:
   upload, quantize, dequantize and sum on the device (``DeviceWorkspace``), against the CPU's
   ``quantize_batch`` + ``dequantize_batch`` + sum; the sums must be identical.

``--quick``: d = 2^24 (and 2^20 in part 2).  ``--log2d N`` sets d = 2^N in both parts (a smoke run
under the CUDA simulator uses a small N).  Exits with a clear message where no GPU is available.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, report  # noqa: E402


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--log2d", type=int, default=None, help="d = 2^N (overrides --quick's size)")
    args = ap.parse_args()
    from qodasim.quantize.core import cuda_available

    if not cuda_available():
        sys.exit("benchmarks/gpu.py: no GPU here (numba.cuda.is_available() is False)")
    from numba import cuda

    from qodasim import Key, Levels, Quantizer
    from qodasim.quantize import dequantize_batch
    from qodasim.quantize.device import DeviceWorkspace, worker_sums

    log2d = args.log2d if args.log2d is not None else (24 if args.quick else 28)
    d = 2**log2d
    repeats = args.repeats or 10
    v = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    quant = Quantizer(Levels.uniform(15))

    def timed(fn, n=repeats):
        fn()
        cuda.synchronize()
        best = float("inf")
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return best

    # 1. resident vector: quantize vs device-to-device copy vs the CPU engine
    ws = DeviceWorkspace(quant, d, 1, dtype=np.float32)
    dv = cuda.to_device(v.reshape(1, d))
    dst = cuda.device_array_like(dv)
    t_gpu = timed(lambda: ws.quantize(dv, [Key(1)]))
    t_copy = timed(lambda: dst.copy_to_device(dv))
    out = (np.empty(d, quant.index_dtype), np.empty(d, np.int8))
    t_cpu = timed(lambda: quant.quantize(v, Key(1), out=out), max(1, repeats // 3))
    ws.quantize(dv, [Key(1)])
    same = ws.quantized()[0].equals(quant.quantize(v, Key(1)))

    # 2. one oracle step of K workers from the host
    K = 16
    total = d if args.log2d is not None else (2**20 if args.quick else 2**22)
    dk = max(total // K, 1)
    V = np.random.default_rng(1).standard_normal((K, dk))
    keys = [Key(2, k, 0) for k in range(K)]
    wk = DeviceWorkspace(quant, dk, K)

    def device_step():
        wk.quantize(V, keys)
        return wk.worker_sums()

    def cpu_step():
        return worker_sums(dequantize_batch(quant.quantize_batch(V, keys)).reshape(1, K, dk))

    t_dstep = timed(device_step, max(1, repeats // 2))
    t_cstep = timed(cpu_step, max(1, repeats // 3))
    same_sums = np.array_equal(device_step(), cpu_step())

    rows = [
        ("d", float(d), "coordinates"),
        ("gpu_quantize_coords_per_s", d / t_gpu, "coord/s (vector on the device)"),
        ("device_copy_coords_per_s", d / t_copy, "coord/s"),
        ("gpu_over_device_copy", t_copy / t_gpu, "x (target >= 0.5)"),
        ("cpu_quantize_coords_per_s", d / t_cpu, "coord/s (numba engine, out= arrays)"),
        ("gpu_over_cpu", t_cpu / t_gpu, "x"),
        ("gpu_equals_cpu", float(same), "1 = identical quantized vector"),
        ("oracle_step_workers", float(K), "K"),
        ("oracle_step_d", float(dk), "coordinates per worker"),
        ("oracle_step_device_s", t_dstep, "s (upload + quantize + dequantize-sum + download)"),
        ("oracle_step_cpu_s", t_cstep, "s (numba engine)"),
        ("oracle_step_cpu_over_device", t_cstep / t_dstep, "x"),
        ("oracle_step_equal", float(same_sums), "1 = identical worker sums"),
    ]
    name = getattr(cuda.get_current_device(), "name", "CUDA simulator")
    report("gpu", rows, {"quick": args.quick, "device": name.decode() if isinstance(name, bytes) else str(name)})


if __name__ == "__main__":
    main()
