"""qodasim's DDP hook against PyTorch's own hooks, on the same model and ranks, in one run.

Part 1 (torchrun, K = 2 gloo ranks on this machine, a CNN of ~0.6M parameters on digits-sized input):
step time (forward + backward + hook + SGD step; best and median over timed steps) and payload bytes
per rank per step for DDP's default all-reduce, ``allreduce_hook``, ``fp16_compress_hook``,
PowerSGD (rank 4, from the third step; the timed steps start at the fourth) and qodasim's hook with
the global, bucketed (512) and layer-wise schemes (the last also by SRA, ``collective="sra"``); every
configuration with ``bucket_cap_mb=64`` (PowerSGD's chained gloo collectives abort with a mismatch
across several buckets).  Payload bytes: what one rank puts into the collective — 4d for fp32, 2d for
fp16, the P and Q factors plus the uncompressed vectors for PowerSGD, the encoded message for qodasim
(for SRA the chunks it sends and its re-quantized chunk).

Part 2 (one process): the hook's own time per coordinate on a bucket (quantize → encode → decode →
dequantize → average, world of one rank) against the toolkit's kernels alone on the same vector
(``Quantizer.quantize`` + ``coding.encode`` + ``coding.decode`` + ``dequantize``), timed in
alternating rounds; the target is a ratio ≤ 2.

``--quick``: fewer steps and smaller vectors.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_times, parser, report, round_ratios  # noqa: E402

CONFIGS = ["ddp-default", "allreduce_hook", "fp16_compress_hook", "powersgd-r4", "qodasim-global",
           "qodasim-bucketed", "qodasim-layerwise", "qodasim-layerwise-sra"]  # fmt: skip


def _model():
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 32, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(32, 64, 3, padding=1)
            self.fc1 = torch.nn.Linear(64 * 8 * 8, 128)
            self.fc2 = torch.nn.Linear(128, 10)

        def forward(self, x):
            x = torch.relu(self.conv1(x))
            x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    return Net()


def _payload_bytes(config: str, model, state) -> float:
    d = sum(p.numel() for p in model.parameters())
    if config in ("ddp-default", "allreduce_hook"):
        return 4.0 * d
    if config == "fp16_compress_hook":
        return 2.0 * d
    if config == "powersgd-r4":
        total = 0
        for p in model.parameters():
            if p.dim() <= 1:
                total += 4 * p.numel()
            else:
                n, m = p.shape[0], p.numel() // p.shape[0]
                total += 4 * min(n * m, 4 * (n + m))
        return float(total)
    return state.ledger.total_bytes() / max(1, state.step)


def worker(config: str, steps: int, out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd
    from torch.nn.parallel import DistributedDataParallel as DDP

    import qodasim.torch as qt

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = _model()
    ddp = DDP(model, bucket_cap_mb=64)  # one or two buckets: PowerSGD's chained gloo collectives need a fixed order
    state = None
    if config == "allreduce_hook":
        ddp.register_comm_hook(None, default_hooks.allreduce_hook)
    elif config == "fp16_compress_hook":
        ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif config == "powersgd-r4":
        ps = psgd.PowerSGDState(process_group=None, matrix_approximation_rank=4, start_powerSGD_iter=2,
                                min_compression_rate=1)  # fmt: skip
        ddp.register_comm_hook(ps, psgd.powerSGD_hook)
    elif config.startswith("qodasim-"):
        scheme = config.split("-")[1]
        levels = ("uniform:3", "uniform:7", "uniform:15") if scheme == "layerwise" else "uniform:7"
        collective = "sra" if config.endswith("-sra") else "allgather"
        state = qt.QuantizeState(model, scheme=scheme, levels=levels, types="role", seed=0, collective=collective)
        ddp.register_comm_hook(state, qt.hook)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(32, 3, 16, 16, generator=gen)
    y = torch.randint(0, 10, (32,), generator=gen)
    times = []
    for t in range(steps + 3):
        dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
        if t >= 3:
            times.append(time.perf_counter() - t0)
    if rank == 0:
        d = sum(p.numel() for p in model.parameters())
        res = {"config": config, "d": d, "best_s": min(times), "median_s": statistics.median(times),
               "payload_bytes": _payload_bytes(config, model, state)}  # fmt: skip
        if state is not None:
            res["bits_per_coord"] = state.ledger.bits_per_coord()
        Path(out).write_text(json.dumps(res))
    dist.destroy_process_group()


def ddp_part(steps: int) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in CONFIGS:
            out = Path(tmp) / f"{config}.json"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--rdzv_backend", "c10d",
                   "--rdzv_endpoint", "localhost:0", __file__, "--worker", config, str(steps), str(out)]  # fmt: skip
            env = dict(os.environ, OMP_NUM_THREADS="1")
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                raise RuntimeError(f"{config} failed:\n{r.stderr[-3000:]}")
            results[config] = json.loads(out.read_text())
    return results


def hook_part(d: int, repeats: int) -> tuple[float, float, float]:
    import torch

    import qodasim.torch as qt
    from qodasim import Key, Levels, Quantizer, coding

    class Bucket:
        def __init__(self, param):
            self.p, self.buf = param, param.grad.reshape(-1).clone()

        def buffer(self):
            return self.buf

        def parameters(self):
            return [self.p]

        def index(self):
            return 0

        def is_last(self):
            return True

    p = torch.nn.Parameter(torch.zeros(d))
    g = torch.randn(d, generator=torch.Generator().manual_seed(0))
    p.grad = g.clone()
    state = qt.QuantizeState(torch.nn.ParameterList([p]), scheme="global", levels="uniform:7")
    Q = Quantizer(Levels.uniform(7))
    v = g.numpy().copy()

    def via_hook():
        b = Bucket(p)
        qt.hook(state, b)

    def kernels():
        qv = Q.quantize(v, Key(0))
        msg = coding.encode(qv)
        coding.decode(msg, max_d=d).dequantize(np.float64)

    times = interleaved_times({"hook": via_hook, "kernels": kernels}, repeats)
    return round_ratios(times, "hook", "kernels") + (min(times["hook"]) / d * 1e9, min(times["kernels"]) / d * 1e9)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    args = parser(__doc__.splitlines()[0]).parse_args()
    steps = 5 if args.quick else 20
    res = ddp_part(steps)
    base = res["ddp-default"]["median_s"]
    rows = []
    for c in CONFIGS:
        r = res[c]
        rows.append((f"{c}: median step (ms)", r["median_s"] * 1e3, "ms"))
        rows.append((f"{c}: step / DDP default", r["median_s"] / base, "x"))
        rows.append((f"{c}: payload bytes per rank per step", r["payload_bytes"], "B"))
    d = 2**16 if args.quick else 2**20
    lo, med, hi, ns_hook, ns_kern = hook_part(d, args.repeats or (5 if args.quick else 15))
    rows += [(f"hook / kernels per coordinate, d={d} (median of rounds)", med, "x"),
             ("hook / kernels, min over rounds", lo, "x"), ("hook / kernels, max over rounds", hi, "x"),
             ("hook ns per coordinate (best)", ns_hook, "ns"),
             ("kernels ns per coordinate (best)", ns_kern, "ns")]  # fmt: skip
    report("torch_hook", rows, {"ddp": res, "d_model": res["ddp-default"]["d"]})


if __name__ == "__main__":
    main()
