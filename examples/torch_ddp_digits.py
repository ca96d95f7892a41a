"""Train a small CNN on scikit-learn's digits with K data-parallel ranks and qodasim's DDP hook.

    torchrun --nproc_per_node 2 examples/torch_ddp_digits.py --scheme layerwise --steps 200

Each rank quantizes its gradients (layer-wise: a norm per layer, 8 levels for conv kernels, 16 for
matrices, 32 for vectors; global and bucketed: 16 levels), sends real Elias-γ streams, decodes every
rank's stream and averages
them; rank 0 prints the loss, the test accuracy, the bits per coordinate read from the streams and
the compression ratio, and records gradient snapshots for ``qodasim analyze`` with ``--record DIR``.
``--scheme default`` trains with DDP's own fp32 all-reduce, for comparison.
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import qodasim.torch as qt


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = torch.nn.Linear(32 * 4 * 4, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scheme", default="layerwise", choices=["default", *qt.SCHEMES])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=32, help="examples per rank per step")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--record", help="write gradient snapshots (every 50 steps) into this folder")
    args = p.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y)
    train, test = slice(0, 1500), slice(1500, None)
    torch.manual_seed(0)
    model = Net()
    ddp = DDP(model)
    state = None
    if args.scheme != "default":
        levels = ("uniform:7", "uniform:15", "uniform:31") if args.scheme == "layerwise" else "uniform:15"
        state = qt.QuantizeState(model, scheme=args.scheme, levels=levels, types="role", seed=0)
        ddp.register_comm_hook(state, qt.hook)
    rec = qt.GradientRecorder(model, every=50, folder=args.record) if args.record and rank == 0 else None
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    for step in range(args.steps):
        idx = torch.randint(0, 1500, (args.batch * world,), generator=gen)[rank::world]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(X[train][idx]), y[train][idx])
        loss.backward()
        if rec is not None:
            rec.step()
        opt.step()
        if rank == 0 and (step + 1) % 50 == 0:
            with torch.no_grad():
                acc = (model(X[test]).argmax(1) == y[test]).float().mean().item()
            line = f"step {step + 1:4d}  loss {loss.item():.3f}  test accuracy {acc:.3f}"
            if state is not None:
                line += f"  bits/coord {state.ledger.bits_per_coord():.3f}  ratio {state.ledger.ratio():.1f}x"
            print(line, flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
