"""One rank of a small DDP training run on scikit-learn's digits (started by torchrun in
tests/integration/test_torch.py).

Usage: torchrun --nproc_per_node K worker.py SCHEME STEPS OUTDIR

SCHEME is ``default`` (DDP's own all-reduce, no hook) or a qodasim hook scheme, optionally followed by
``:sra`` (the hook's scatter-reduce-allgather) and ``:x`` (biases sent raw).  Writes, per rank,
``OUTDIR/rank{r}.npz`` (final parameters, every bucket input of the hook, the buckets' parameter
names) and ``OUTDIR/rank{r}.json`` (the ledger, the bytes the collectives moved, the hook state).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import qodasim.torch as qt


class Net(torch.nn.Module):
    """A small CNN; ``unused`` never takes part in the forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc1 = torch.nn.Linear(4 * 6 * 6, 32)
        self.fc2 = torch.nn.Linear(32, 10)
        self.unused = torch.nn.Linear(5, 5)

    def forward(self, x):
        h = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))


def data():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return torch.tensor(X / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8), torch.tensor(y)


def main() -> None:
    scheme, steps, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    progress = out / f"rank{rank}.progress"  # how far this rank got, for the test's failure message

    def reached(what: str) -> None:
        with progress.open("a") as f:
            f.write(what + "\n")

    reached("init")
    torch.manual_seed(0)
    model = Net()
    init = {n: p.detach().clone().numpy() for n, p in model.named_parameters()}
    ddp = DDP(model, find_unused_parameters=True, bucket_cap_mb=0.004)  # several buckets
    moved = {"calls": 0, "bytes_in": 0, "sizes": [], "a2a_sizes": []}
    real, real_a2a = dist.all_gather, dist.all_to_all_single

    def counting(tensor_list, tensor, group=None, async_op=False):
        out = real(tensor_list, tensor, group=group, async_op=async_op)
        moved["calls"] += 1
        moved["bytes_in"] += tensor.numel() * tensor.element_size()
        if tensor.dtype == torch.int64:
            moved["sizes"].append([int(t.item()) for t in tensor_list])
        return out

    def counting_a2a(output, input, *args, **kwargs):
        out = real_a2a(output, input, *args, **kwargs)
        if input.dtype == torch.int64:  # the sizes this rank sends to every rank
            moved["a2a_sizes"].append([int(t) for t in input.tolist()])
        return out

    dist.all_gather, dist.all_to_all_single = counting, counting_a2a
    state = None
    name, *opts = scheme.split(":")
    if name != "default":
        state = qt.QuantizeState(model, scheme=name, levels=("uniform:3", "uniform:7", "uniform:15"),
                                 types="role", seed=11, record_inputs=True,
                                 collective="sra" if "sra" in opts else "allgather",
                                 exclude=("*.bias",) if "x" in opts else ())  # fmt: skip
        ddp.register_comm_hook(state, qt.hook)
    X, y = data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(5)
    for t in range(steps):
        reached(f"step {t}")
        idx = torch.randperm(X.shape[0], generator=gen)[: 16 * world]
        mine = idx[rank::world]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(X[mine]), y[mine])
        loss.backward()
        opt.step()
    arrays = {f"param/{n}": p.detach().numpy() for n, p in model.named_parameters()}
    arrays.update({f"init/{n}": a for n, a in init.items()})
    info = {"rank": rank, "world": world, "moved": moved}
    if state is not None:
        for t, b, g in state.inputs:
            arrays[f"input/{t}/{b}"] = g
        info["ledger"] = state.ledger.state_dict()
        info["buckets"] = {str(b): list(names) for b, names in state.bucket_names.items()}
        info["state"] = {k: v for k, v in state.state_dict().items() if k != "ledger"}
    np.savez(out / f"rank{rank}.npz", **arrays)
    (out / f"rank{rank}.json").write_text(json.dumps(info))
    reached("saved")
    dist.barrier()  # no rank tears gloo down while another still talks to it
    dist.destroy_process_group()
    reached("destroyed")


if __name__ == "__main__":
    main()
    # Every result is written and the group destroyed: leave without the interpreter's teardown, where
    # gloo's background threads were seen to call std::terminate (SIGABRT after "destroyed", CI).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
