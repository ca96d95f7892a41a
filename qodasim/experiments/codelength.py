"""Experiment 2 (THEORY §7.2): code length.

For uniform levels, dimensions ``d`` and the dense / sparse protocols: the mean length of real
encoded streams against the exact expected length (THEORY §3), the entropy floor, QSGD's sparse
bound (Theorem 3.2 without its o(1)) and the tight worst-case expected dense length; plus a
layer-wise quantizer (three types).  Verdicts: measured mean within 6 standard errors of the exact
expectation everywhere; the dense payload above the entropy floor (Shannon, per-symbol prefix code);
the dense payload below the tight worst case; sparse-ω below QSGD's bound for ``d ≥ 4096``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import coding
from ..levels import Levels
from ..quantize import LayerLayout, LayerwiseQuantizer, Quantizer
from ..rng import Key
from . import plotting
from .base import Progress, Result, Verdict, metadata

NAME = "codelength"
Z = 6.0


def _measure(quant, v, protocol, code, n, seed):
    bits = np.array([coding.encode(quant.quantize(v, Key(seed, 0, t)), protocol, code).nbits for t in range(n)])
    return float(bits.mean()), float(bits.std(ddof=1) / np.sqrt(n))


def run(config: dict, progress: bool = True) -> Result:
    specs, dims = list(config["levels"]), [int(d) for d in config["d"]]
    protocols, code = list(config.get("protocols", ["dense", "sparse"])), str(config.get("code", "omega"))
    n, seed = int(config["n_draws"]), int(config.get("seed", 0))
    rng = np.random.default_rng(seed)
    rows, fails_mc, fails_entropy, fails_tight, fails_qsgd = [], [], [], [], []
    bar = Progress(NAME, len(specs) * len(dims) * len(protocols) + 1, progress)
    for spec in specs:
        levels = Levels.parse(spec)
        quant = Quantizer(levels)
        for d in dims:
            v = rng.standard_normal(d)
            for protocol in protocols:
                mean, se = _measure(quant, v, protocol, code, n, seed)
                exact = coding.expected_bits(v, quant, protocol, code)
                fixed = exact["header"] + exact["level_tables"] + exact["norms"]
                row = {"levels": spec, "d": d, "protocol": protocol, "measured": mean, "se": se,
                       "exact": exact["total"], "fixed": fixed, "payload": exact["payload"],
                       "entropy": coding.entropy_floor(v, quant)}  # fmt: skip
                if se > 0 and abs(mean - exact["total"]) > Z * se:
                    fails_mc.append(f"{spec} d={d} {protocol}")
                if protocol == "dense":
                    row["tight"] = coding.tight_expected_dense_bits(levels, d, code)
                    if exact["payload"] < row["entropy"] - 1e-9:
                        fails_entropy.append(f"{spec} d={d}")
                    if exact["payload"] > row["tight"] * (1 + 1e-9):
                        fails_tight.append(f"{spec} d={d}")
                if protocol == "sparse" and levels.uniform_s >= 2 and code == "omega":
                    row["qsgd"] = coding.qsgd_sparse_bound(levels.uniform_s, d)
                    if d >= 4096 and mean - exact["header"] - exact["level_tables"] > row["qsgd"]:
                        fails_qsgd.append(f"{spec} d={d}")
                rows.append(row)
                bar.step()
    # layer-wise: three types with their own levels
    layout = LayerLayout([512, 2048, 256, 1024], [0, 1, 2, 1])
    lq = LayerwiseQuantizer(layout, (Levels.uniform(3), Levels.exponential(6), Levels.uniform(15)))
    v = np.concatenate([rng.standard_normal(sz) * sc for sz, sc in zip(layout.sizes, [1.0, 0.01, 10.0, 0.1])])
    layer_rows = []
    for protocol in protocols:
        mean, se = _measure(lq, v, protocol, code, n, seed)
        exact = coding.expected_bits(v, lq, protocol, code)
        layer_rows.append({"protocol": protocol, "measured": mean, "se": se, "exact": exact["total"]})
        if se > 0 and abs(mean - exact["total"]) > Z * se:
            fails_mc.append(f"layer-wise {protocol}")
    bar.step()
    verdicts = [
        Verdict("mean_equals_exact", not fails_mc, "; ".join(fails_mc) or f"all within {Z} SE"),
        Verdict("above_entropy", not fails_entropy, "; ".join(fails_entropy) or "dense payload ≥ entropy floor"),
        Verdict("below_tight", not fails_tight, "; ".join(fails_tight) or "dense payload ≤ tight worst case"),
        Verdict("below_qsgd", not fails_qsgd, "; ".join(fails_qsgd) or "sparse-ω ≤ QSGD Thm 3.2 (d ≥ 4096)"),
    ]
    return Result(NAME, config, {"rows": rows, "layerwise": layer_rows}, verdicts, metadata(seed))


def plot(result: Result, outdir: Path) -> list[Path]:
    rows = result.data["rows"]
    specs = list(dict.fromkeys(r["levels"] for r in rows))
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    fig, axes = plotting.figure(ncols=len(specs), width=3.0, height=2.6)
    for ax, spec in zip(axes[0], specs):
        for k, protocol in enumerate(protocols):
            rs = [r for r in rows if r["levels"] == spec and r["protocol"] == protocol]
            d = np.array([r["d"] for r in rs], float)
            c = plotting.COLORS[k]
            ax.plot(d, [r["exact"] / r["d"] for r in rs], color=c, label=f"{protocol}: exact E[bits]")
            ax.errorbar(d, [r["measured"] / r["d"] for r in rs], yerr=[2 * r["se"] / r["d"] for r in rs], fmt="o",
                        color=c, mfc="none", label=f"{protocol}: measured ±2SE")  # fmt: skip
            if protocol == "dense":
                ax.plot(d, [(r["entropy"] + r["fixed"]) / r["d"] for r in rs], ":", color="#555555",
                        label="entropy floor + fixed")  # fmt: skip
                ax.plot(d, [(r["tight"] + r["fixed"]) / r["d"] for r in rs], "-.", color="#000000",
                        label="tight worst case (dense)")  # fmt: skip
            if protocol == "sparse" and "qsgd" in rs[0]:
                ax.plot(d, [(r["qsgd"] + r["fixed"] - 32) / r["d"] for r in rs], "--", color=plotting.COLORS[3],
                        label="QSGD Thm 3.2 (no o(1))")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("dimension d")
        ax.set_title(spec)
        ax.legend(fontsize=5.5, loc="upper right")
    axes[0][0].set_ylabel("bits per coordinate")
    caption = (
        "Bits per coordinate of real Elias-ω streams (markers) against the exact expected length (lines), "
        "the entropy floor, the tight worst case and QSGD's sparse bound; fixed header/norm bits included."
    )
    return plotting.save(fig, outdir, "codelength", caption)
