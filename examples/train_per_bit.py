"""Training outcome per bit: a small CNN on scikit-learn's digits trained by K simulated data-parallel
workers whose gradients travel quantized, with each scheme at equal bits per coordinate; which error
metric — whole-vector or per-layer relative — predicts the outcome?

    python examples/train_per_bit.py --out train_per_bit.json          # about 5 minutes on 2 cores

Each step every worker draws its own minibatch, computes its gradient, quantizes the flat gradient
(:mod:`qodasim.quantize`, key ``(seed, worker, step)``) and sends a real Elias-γ stream
(:func:`qodasim.coding.encode`, bits counted from the stream); the mean of the decoded gradients is
the update's gradient (Adam or SGD with momentum).  fp32 sends 32 bits per coordinate.

Schemes, each chosen once at the budget from the first step's mean gradient (exact statistics,
:mod:`qodasim.optimize.schemes`, Elias-γ): bucketed QSGD (512), global (the better of uniform and
optimized levels at the budget), layer-wise (the best of its level fits and α per type) and layer-wise
with per-layer widths (L-GreCo).  At each budget, optimizer and seed the final held-out loss is
read at equal total bits (the least any scheme sent, interpolated on each run's loss-against-bits
curve) with each scheme's whole-vector variance and mean per-layer relative error on that first
gradient; over seeds, 95% bootstrap intervals of the losses, and per (budget, optimizer) Spearman's
rank correlation of each metric with the mean final loss across schemes.  Needs the ``torch`` extra.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from sklearn.datasets import load_digits

from qodasim import Key, LayerLayout
from qodasim.coding import encode
from qodasim.optimize import schemes as S

#: Scheme name → the schemes of :mod:`qodasim.optimize.schemes` it picks from (least whole-vector variance).
SCHEMES = {"qsgd-b512": ("qsgd-b512",), "global": ("qsgd", "global-opt"),
           "layerwise": ("layer-uniform", "layer-opt", "layer-opt-energy", "layer-opt-alloc"),
           "layerwise+widths": ("lgreco",)}  # fmt: skip


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = torch.nn.Linear(32 * 2 * 2, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def data():
    d = load_digits()
    X = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return X[perm[:1400]], y[perm[:1400]], X[perm[1400:]], y[perm[1400:]]


def flat_grads(model, layout: LayerLayout) -> np.ndarray:
    return layout.flatten({n: q.grad.detach().numpy() for n, q in model.named_parameters()}, np.float64)


def set_grads(model, layout: LayerLayout, v: np.ndarray) -> None:
    for (n, q), (name, arr) in zip(model.named_parameters(), layout.unflatten(v).items()):
        assert n == name
        q.grad = torch.tensor(arr, dtype=q.dtype).reshape(q.shape)


def choose(v: np.ndarray, layout: LayerLayout, scheme: str, budget: float):
    """The scheme's quantizer of least whole-vector variance within ``budget`` (Elias-γ), its point."""
    best = None
    for s in SCHEMES[scheme]:
        p = S.at_budget(S.scheme_curve(v, layout, s, budget + 1.0, ("gamma",)), v, layout, budget, "gamma")
        if p is not None and (best is None or p.variance < best.variance):
            best = p
    if best is None:
        raise ValueError(f"{scheme}: nothing fits {budget} bits/coord")
    return best.quantizer, {"variance": best.variance, "mean_layer_rel": best.mean_layer_rel,
                            "expected_bits": best.bits["gamma"]}  # fmt: skip


def run(scheme: str, budget: float, opt_name: str, seed: int, args, X, y, Xt, yt) -> dict:
    torch.manual_seed(seed)
    model = Net()
    names = {n: q.detach().numpy() for n, q in model.named_parameters()}
    layout = LayerLayout.from_arrays(names, types="role")
    opt = (torch.optim.Adam(model.parameters(), lr=args.adam_lr) if opt_name == "adam"
           else torch.optim.SGD(model.parameters(), lr=args.sgd_lr, momentum=0.9))  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    Q, metrics, bits_sent, losses = None, {}, 0, []
    for t in range(args.steps):
        grads = []
        for _ in range(args.K):
            idx = torch.randint(0, len(y), (args.batch,), generator=gen)
            model.zero_grad()
            torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            grads.append(flat_grads(model, layout))
        if scheme == "fp32":
            mean, bits = np.mean(grads, axis=0), 32 * layout.d * args.K
        else:
            if Q is None:
                Q, metrics = choose(np.mean(grads, axis=0), layout, scheme, budget)
            qvs = [Q.quantize(g, Key(seed, k, t)) for k, g in enumerate(grads)]
            bits = sum(encode(qv).nbits for qv in qvs)
            mean = np.mean([qv.dequantize(np.float64) for qv in qvs], axis=0)
        bits_sent += bits
        set_grads(model, layout, mean)
        opt.step()
        if t % args.eval_every == 0 or t == args.steps - 1:
            with torch.no_grad():
                losses.append(
                    (t, bits_sent / layout.d / args.K, float(torch.nn.functional.cross_entropy(model(Xt), yt)))
                )
    return {
        "scheme": scheme,
        "budget": budget,
        "optimizer": opt_name,
        "seed": seed,
        "final_loss": losses[-1][2],
        "bits_per_coord_per_worker": bits_sent / args.steps / layout.d / args.K,
        "curve": losses,
        **metrics,
    }


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def at_common_bits(rows: list) -> None:
    """Each quantized run's held-out loss read at the least total bits any quantized scheme sent at
    its (budget, optimizer, seed) — equal bits, not equal steps — by linear interpolation on its
    loss-against-bits curve (``loss_at_common_bits``); fp32 keeps its final loss (the reference)."""
    for r in rows:
        if r["scheme"] == "fp32":
            r["loss_at_common_bits"] = r["final_loss"]
            continue
        peers = [x for x in rows if x["scheme"] != "fp32" and (x["budget"], x["optimizer"], x["seed"])
                 == (r["budget"], r["optimizer"], r["seed"])]  # fmt: skip
        common = min(x["curve"][-1][1] for x in peers)
        bits, loss = np.array([c[1] for c in r["curve"]]), np.array([c[2] for c in r["curve"]])
        r["common_bits"] = common
        r["loss_at_common_bits"] = float(np.interp(common, bits, loss))


def summarize(rows: list, boot: int = 2000) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for budget in sorted({r["budget"] for r in rows if r["scheme"] != "fp32"}):
        for opt in sorted({r["optimizer"] for r in rows}):
            sel = [r for r in rows if r["budget"] == budget and r["optimizer"] == opt]
            schemes = sorted({r["scheme"] for r in sel})
            seeds = sorted({r["seed"] for r in sel})
            pick = {(r["scheme"], r["seed"]): r["loss_at_common_bits"] for r in sel}
            loss = np.array([[pick[s, z] for z in seeds] for s in schemes])
            idx = rng.integers(0, len(seeds), (boot, len(seeds)))
            means = loss[:, idx].mean(axis=2)  # (schemes, boot)
            cell = {"schemes": {s: {"loss": float(loss[i].mean()), "ci": np.quantile(means[i], [0.025, 0.975]).tolist()}
                                for i, s in enumerate(schemes)}}  # fmt: skip
            q = [s for s in schemes if s != "fp32"]
            for metric in ("variance", "mean_layer_rel"):
                m = [np.mean([r[metric] for r in sel if r["scheme"] == s]) for s in q]
                qi = [schemes.index(s) for s in q]
                rho = [spearman(m, means[qi, b]) for b in range(boot)]
                cell[metric] = {"spearman": spearman(m, loss[qi].mean(axis=1)),
                                "ci": np.nanquantile(rho, [0.025, 0.975]).tolist()}  # fmt: skip
            out[f"{budget:g} bits, {opt}"] = cell
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="train_per_bit.json")
    p.add_argument("--K", type=int, default=4)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--budgets", type=float, nargs="+", default=[2.0, 3.0])
    p.add_argument("--optimizers", nargs="+", default=["adam", "sgd"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--adam-lr", type=float, default=2e-3)
    p.add_argument("--sgd-lr", type=float, default=0.05)
    p.add_argument("--eval-every", type=int, default=10)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    X, y, Xt, yt = data()
    rows = []
    for opt in args.optimizers:
        for seed in range(args.seeds):
            rows.append(run("fp32", 32.0, opt, seed, args, X, y, Xt, yt))
            for budget in args.budgets:
                for scheme in SCHEMES:
                    rows.append(run(scheme, budget, opt, seed, args, X, y, Xt, yt))
                    r = rows[-1]
                    print(
                        f"{opt} seed {seed} {budget:g} bits {scheme:17s}: loss {r['final_loss']:.4f}, "
                        f"{r['bits_per_coord_per_worker']:.3f} bits/coord, var {r['variance']:.3g}, "
                        f"per-layer {r['mean_layer_rel']:.3g}",
                        flush=True,
                    )
    at_common_bits(rows)
    fp = [r for r in rows if r["scheme"] == "fp32"]
    summary = summarize(
        [dict(r, budget=b) for r in fp for b in args.budgets] + [r for r in rows if r["scheme"] != "fp32"]
    )
    with open(args.out, "w") as fh:
        json.dump({"args": vars(args), "rows": rows, "summary": summary}, fh)
    for k, v in summary.items():
        print(
            k,
            {s: round(c["loss"], 4) for s, c in v["schemes"].items()},
            "spearman variance",
            round(v["variance"]["spearman"], 2),
            "per-layer",
            round(v["mean_layer_rel"]["spearman"], 2),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
