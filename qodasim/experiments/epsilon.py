"""Experiment 8 (THEORY §7.4): the quantization error ``ε_Q`` in QODA's constant.

QODA with one global uniform quantizer of ``s`` levels, ``s`` in ``levels_s``, against uncompressed QODA
on the bilinear game of experiments 4–5, with no oracle noise (so the only noise is the quantizer's),
``K`` workers, several seeds.  The prediction: the constant grows with ``ε_Q`` — at small ``s`` the gap
against uncompressed grows, at large ``s`` it vanishes.  Verdicts:

* ``gap_ratio_decreases_in_s``: the final gap ratio to uncompressed decreases from each ``s`` to the
  next by more than twice the combined standard error of the two replica means (a difference, so no
  division by a standard error; uncompressed runs are deterministic here, so the ratio's error is the
  quantized run's);
* ``small_s_costs``: at the smallest ``s`` the ratio is at least ``small_s_ratio``;
* ``large_s_vanishes``: at the largest ``s`` the ratio is within ``1 + large_s_excess``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..solvers import SolverConfig, solve
from . import plotting
from .base import Param, Progress, Result, Verdict, check_config, metadata
from .convergence import bilinear_setup

NAME = "epsilon"
#: Config keys.
SCHEMA = {
    "seed": Param("int", 0, minimum=0),
    "n": Param("int", 5, minimum=1, maximum=10**5),
    "T": Param("int", minimum=30, maximum=10**8),
    "K": Param("int", 4, minimum=1, maximum=10**5),
    "replicas": Param("int", minimum=2, maximum=10**5),
    "levels_s": Param("int", [1, 2, 4, 16], many=True, minimum=1, maximum=65535),
    "small_s_ratio": Param("float", 2.0, minimum=1.0),
    "large_s_excess": Param("float", 0.1, minimum=0.0),
}


def run(config: dict, progress: bool = True) -> Result:
    config = check_config(NAME, SCHEMA, config)
    seed = int(config["seed"])
    problem, _ = bilinear_setup({"n": config["n"], "seed": seed})
    ss = sorted(int(s) for s in config["levels_s"])
    T, K, R = int(config["T"]), int(config["K"]), int(config["replicas"])
    bar = Progress(NAME, len(ss) + 1, progress)

    def final_gaps(**kw):
        res = solve(problem, SolverConfig(method="qoda", K=K, T=T, replicas=R, seed=seed, record=10, **kw))
        return res.measures["gap_avg"][:, -1], res.status

    base, status = final_gaps()
    bar.step()
    rows = [{"s": None, "status": status, "gap_mean": float(base.mean())}]
    for s in ss:
        g, status = final_gaps(compression="global", levels=f"uniform:{s}")
        ratio = g / base.mean()
        rows.append({"s": s, "status": status, "gap_mean": float(g.mean()), "ratio": float(ratio.mean()),
                     "ratio_se": float(ratio.std(ddof=1) / np.sqrt(R))})  # fmt: skip
        bar.step()
    q = rows[1:]
    steps = []
    for a, b in zip(q, q[1:]):
        margin = 2 * np.hypot(a["ratio_se"], b["ratio_se"])
        steps.append((a["s"], b["s"], a["ratio"] - b["ratio"], margin))
    dec = all(diff > m for _, _, diff, m in steps)
    table = ", ".join(f"s = {r['s']}: {r['ratio']:.3f} ± {r['ratio_se']:.3f}" for r in q)
    regime = f"bilinear game n = {config['n']}, QODA, K = {K}, T = {T}, {R} seeds, no oracle noise"
    fs, ls = float(config["small_s_ratio"]), float(config["large_s_excess"])
    ok = all(r["status"] == "ok" for r in rows)
    verdicts = [
        Verdict("gap_ratio_decreases_in_s", bool(dec and ok),
                f"final gap / uncompressed ({base.mean():.4g}), mean ± SE: {table}; each drop > 2 combined SE "
                f"({'; '.join(f'{a}→{b}: {d:.3f} vs {m:.3f}' for a, b, d, m in steps)}); {regime}"),
        Verdict("small_s_costs", bool(q[0]["ratio"] >= fs),
                f"s = {q[0]['s']}: ratio {q[0]['ratio']:.2f} ≥ {fs:g} (large ε_Q costs)"),
        Verdict("large_s_vanishes", bool(q[-1]["ratio"] <= 1 + ls),
                f"s = {q[-1]['s']}: ratio {q[-1]['ratio']:.3f} ≤ {1 + ls:g} (small ε_Q: as uncompressed)"),
    ]  # fmt: skip
    return Result(NAME, config, {"rows": rows}, verdicts, metadata(seed))


def plot(result: Result, outdir: Path) -> list[Path]:
    q = [r for r in result.data["rows"] if r["s"] is not None]
    fig, axes = plotting.figure(ncols=1, width=3.4, height=2.6)
    ax = axes[0][0]
    s = np.array([r["s"] for r in q], float)
    ratio = np.array([r["ratio"] for r in q])
    se = np.array([r["ratio_se"] for r in q])
    ax.errorbar(s, ratio, yerr=2 * se, fmt="o-", color=plotting.COLORS[0], label="QODA, global uniform:s")
    ax.axhline(1.0, color="#777777", ls=":", label="uncompressed")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("levels s (ε_Q falls as s grows)")
    ax.set_ylabel("final gap / uncompressed")
    ax.legend(fontsize=6)
    caption = "QODA's gap against uncompressed as the quantizer gets finer (no oracle noise; ±2SE over seeds)."
    return plotting.save(fig, outdir, "epsilon", caption)
