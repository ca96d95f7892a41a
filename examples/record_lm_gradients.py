"""Train a small GPT-style byte-level language model on the Python installation's own source code (text
every machine with Python has) and record its gradients at the start, middle and end of training.

    python examples/record_lm_gradients.py --out lm_grads            # about 1.0M parameters, 64 tensors
    qodasim run my_realnets.toml                                     # gradients = ["lm_grads/*.npz"]

The model is written here (PyTorch only): byte embeddings (256 symbols) and learned positions, ``--blocks``
pre-norm decoder blocks (causal self-attention with a fused ``qkv`` projection, a 4× MLP with GELU),
a final layer norm and a head tied to the embedding; GPT-2's initialization.  Adam, a fixed seed, ``--steps`` steps of
``--batch`` windows of ``--context`` bytes drawn from the concatenated ``.py`` files of the standard
library (sorted by path, the first ``--text-mb`` megabytes).  Snapshots: ``grads_step{t:06d}.npz``
at ``t = 0``, the middle and the last step (each the gradient of that step's minibatch loss), and
``loss.json`` with the training curve.  Needs the ``torch`` extra.
"""

from __future__ import annotations

import argparse
import json
import math
import sysconfig
from pathlib import Path

import numpy as np
import torch
from torch import nn


def corpus(megabytes: float) -> np.ndarray:
    """The standard library's ``.py`` files, sorted by path and concatenated, as bytes (uint8)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out, size, limit = [], 0, int(megabytes * 2**20)
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        out.append(data)
        size += len(data)
        if size >= limit:
            break
    return np.frombuffer(b"".join(out)[:limit], np.uint8)


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)
        self.mlp_fc = nn.Linear(width, 4 * width)
        self.mlp_proj = nn.Linear(4 * width, width)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(w, dim=2)
        q, k, v = (z.view(b, t, self.heads, w // self.heads).transpose(1, 2) for z in (q, k, v))
        a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(a.transpose(1, 2).reshape(b, t, w))
        return x + self.mlp_proj(nn.functional.gelu(self.mlp_fc(self.ln_2(x))))


class TinyGPT(nn.Module):
    def __init__(self, width: int, blocks: int, heads: int, context: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(256, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList(Block(width, heads) for _ in range(blocks))
        self.ln_f = nn.LayerNorm(width)
        for name, q in self.named_parameters():  # GPT-2's initialization
            if name.endswith("weight") and q.dim() == 2:
                nn.init.normal_(q, 0.0, 0.02 / math.sqrt(2 * blocks) if name.endswith("proj.weight") else 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(q)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # the head tied to the embedding


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="lm_grads", help="folder of the snapshots (default: lm_grads)")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--text-mb", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    text = torch.from_numpy(corpus(args.text_mb).astype(np.int64))
    model = TinyGPT(args.width, args.blocks, args.heads, args.context)
    n_params = sum(q.numel() for q in model.parameters())
    n_tensors = sum(1 for _ in model.parameters())
    print(f"{n_params:,} parameters in {n_tensors} tensors; {text.numel():,} bytes of Python source")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {0, args.steps // 2, args.steps - 1}
    losses = []
    for step in range(args.steps):
        start = torch.randint(0, text.numel() - args.context - 1, (args.batch,), generator=gen)
        window = torch.stack([text[s : s + args.context + 1] for s in start.tolist()])
        logits = model(window[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 256), window[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        losses.append(float(loss.detach()))
        if step in record:
            grads = {n: q.grad.detach().numpy().astype(np.float32) for n, q in model.named_parameters()}
            np.savez(out / f"grads_step{step:06d}.npz", **grads)
            print(f"step {step}: loss {losses[-1]:.3f} ({losses[-1] / math.log(2):.2f} bits/byte), snapshot saved")
        opt.step()
    (out / "loss.json").write_text(json.dumps({"loss": losses, "args": vars(args), "parameters": n_params,
                                               "tensors": n_tensors}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
