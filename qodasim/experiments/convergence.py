"""Experiment 4 (THEORY §7.4): convergence rates of QODA and Q-GenX.

Restricted gap at the ergodic average against iterations (and bits), on a bilinear game, for QODA and
Q-GenX with layer-wise quantization and uncompressed QODA, under absolute and relative noise, over
several seeds (replicas).  Log-log slopes are fitted on the last decade of iterations to the mean gap
over seeds.  Predictions: ``T^{-1/2}`` under absolute noise, ``T^{-1}`` under relative noise; the noise
term shrinks with ``K``.  Verdicts: QODA's slope under absolute noise within ``−0.5 ± 0.1``; under
relative noise ``≤ −0.9``; the final gap under absolute noise decreases with ``K`` (fitted exponent
``< 0``, reported).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..solvers import AdaptiveStep, SolverConfig, solve
from ..vi import NoiseModel, bilinear_game
from . import plotting
from .base import Param, Progress, Result, Verdict, check_config, metadata

NAME = "convergence"
#: Config keys of the bilinear-game experiments 4–5 (:func:`bilinear_setup`, :func:`noise_model`).
BILINEAR_SCHEMA = {
    "seed": Param("int", 0, minimum=0),
    "n": Param("int", minimum=1, maximum=10**5),
    "sigma": Param("float", minimum=0.0),
    "sigma_rel": Param("float", minimum=0.0),
    "levels": Param("levels", ["uniform:7"], many=True),
    "T": Param("int", minimum=30, maximum=10**8),
    "replicas": Param("int", minimum=1, maximum=10**5),
    "K": Param("int", minimum=1, maximum=10**5),
    # the adaptive step rule (THEORY §6; qodasim.solvers.AdaptiveStep): scale, exponents, per-worker sums
    "step_c": Param("float", 1.0, minimum=1e-12),
    "step_p_eta": Param("float", 0.5, minimum=0.0, maximum=1.0),
    "step_p_gamma": Param("float", 0.5, minimum=0.0, maximum=1.0),
    "step_per_worker": Param("bool", False),
}
#: Config keys (THEORY §7.4); ``replicas ≥ 2`` so that the gap's standard error exists.
SCHEMA = {
    **BILINEAR_SCHEMA,
    "replicas": Param("int", minimum=2, maximum=10**5),
    "K_scaling": Param("int", many=True, minimum=1, maximum=10**5),
    "T_scaling": Param("int", minimum=30, maximum=10**8),
    "record": Param("int", 30, minimum=5, maximum=10**4),
}


def fit_slope(iterations, gaps, start_fraction: float = 0.1) -> float:
    """Least-squares slope of ``log gap`` against ``log t`` over ``t ≥ start_fraction·T``.

    A gap ``≤ 0`` in the window is an error, not a point to drop: the gap measures are exact and
    non-negative, so such a value means a broken measure (or a run that reached the solution exactly,
    which has no slope on a log scale).
    """
    it = np.asarray(iterations, float)
    g = np.asarray(gaps, float)
    m = it >= start_fraction * it[-1]
    if np.any(~(g[m] > 0)):
        raise ValueError(f"fit_slope: {int(np.sum(~(g[m] > 0)))} recorded gaps in the window are <= 0 or NaN")
    if m.sum() < 3:
        raise ValueError("not enough recorded points to fit a slope")
    return float(np.polyfit(np.log(it[m]), np.log(g[m]), 1)[0])


def bilinear_setup(config: dict):
    """The bilinear game of experiments 4–5 and one level spec per layer type (a single spec is
    repeated for every type)."""
    problem = bilinear_game(int(config["n"]), seed=int(config.get("seed", 0)) + 1)
    levels = tuple(config.get("levels", ["uniform:7"]))
    if len(levels) == 1:
        levels = levels * problem.layout.n_types
    return problem, levels


def step_from(cfg: dict) -> AdaptiveStep:
    """The adaptive step rule of a bilinear-experiment config (keys ``step_*``)."""
    return AdaptiveStep(c=cfg["step_c"], p_eta=cfg["step_p_eta"], p_gamma=cfg["step_p_gamma"],
                        per_worker=cfg["step_per_worker"])  # fmt: skip


def noise_model(kind: str, cfg: dict) -> NoiseModel:
    if kind == "absolute":
        return NoiseModel("absolute", sigma=float(cfg["sigma"]))
    return NoiseModel("relative", sigma_rel=float(cfg["sigma_rel"]))


def run(config: dict, progress: bool = True) -> Result:
    config = check_config(NAME, SCHEMA, config)
    seed = int(config.get("seed", 0))
    problem, levels = bilinear_setup(config)
    T, R, K = int(config["T"]), int(config["replicas"]), int(config["K"])
    variants = [("qoda", "layerwise"), ("qgenx", "layerwise"), ("qoda", "none")]
    Ks = [int(k) for k in config["K_scaling"]]
    bar = Progress(NAME, 2 * len(variants) + len(Ks), progress)
    runs = []
    for kind in ("absolute", "relative"):
        for method, comp in variants:
            cfg = SolverConfig(method=method, K=K, T=T, compression=comp, levels=levels,
                               noise=noise_model(kind, config), replicas=R, seed=seed, step=step_from(config),
                               record=int(config.get("record", 30)))  # fmt: skip
            res = solve(problem, cfg)
            gaps = res.measures["gap_avg"]
            se = gaps.std(axis=0, ddof=1) / np.sqrt(R)
            runs.append({"noise": kind, "method": method, "compression": comp, "iterations": res.iterations.tolist(),
                         "gap_mean": gaps.mean(axis=0).tolist(), "gap_se": se.tolist(),
                         "bits_mean": res.cumulative_bits().mean(axis=0).tolist(),
                         "slope": fit_slope(res.iterations, gaps.mean(axis=0)), "status": res.status})  # fmt: skip
            bar.step()
    k_rows = []
    for k in Ks:
        cfg = SolverConfig(method="qoda", K=k, T=int(config["T_scaling"]), compression="layerwise", levels=levels,
                           noise=noise_model("absolute", config), replicas=R, seed=seed, record=10,
                           step=step_from(config))  # fmt: skip
        res = solve(problem, cfg)
        k_rows.append({"K": k, "final_gap": float(res.measures["gap_avg"][:, -1].mean())})
        bar.step()
    k_exp = float(np.polyfit(np.log(Ks), np.log([r["final_gap"] for r in k_rows]), 1)[0]) if len(Ks) > 1 else 0.0

    def slope_of(noise, method, comp="layerwise"):
        return next(
            r["slope"] for r in runs if r["noise"] == noise and r["method"] == method and r["compression"] == comp
        )

    s_abs, s_rel = slope_of("absolute", "qoda"), slope_of("relative", "qoda")
    diverged = [f"{r['method']}/{r['noise']}" for r in runs if r["status"] != "ok"]
    table = {f"slope_{r['method']}_{r['compression']}_{r['noise']}": r["slope"] for r in runs}
    verdicts = [
        Verdict("qoda_absolute_slope", abs(s_abs + 0.5) <= 0.1, f"QODA absolute-noise slope {s_abs:.3f} ∈ −0.5 ± 0.1"),
        Verdict("qoda_relative_slope", s_rel <= -0.9, f"QODA relative-noise slope {s_rel:.3f} ≤ −0.9"),
        Verdict("noise_shrinks_with_K", k_exp < 0, f"final gap ∝ K^{k_exp:.3f} (absolute noise)"),
        Verdict("no_divergence", not diverged, ", ".join(diverged) or "every run finished"),
    ]
    return Result(NAME, config, {"runs": runs, "K_scaling": k_rows, "K_exponent": k_exp, "slopes": table},
                  verdicts, metadata(seed))  # fmt: skip


def plot(result: Result, outdir: Path) -> list[Path]:
    runs = result.data["runs"]
    fig, axes = plotting.figure(ncols=3, width=3.0, height=2.6)
    styles = {("qoda", "layerwise"): (plotting.COLORS[0], "QODA, layer-wise"),
              ("qgenx", "layerwise"): (plotting.COLORS[1], "Q-GenX, layer-wise"),
              ("qoda", "none"): ("#777777", "QODA, uncompressed")}  # fmt: skip
    for ax, kind in zip(axes[0][:2], ("absolute", "relative")):
        for r in (r for r in runs if r["noise"] == kind):
            c, label = styles[(r["method"], r["compression"])]
            it, g, se = np.array(r["iterations"]), np.array(r["gap_mean"]), np.array(r["gap_se"])
            ax.plot(it, g, color=c, label=f"{label} (slope {r['slope']:.2f})")
            ax.fill_between(it, np.maximum(g - 2 * se, g * 1e-3), g + 2 * se, color=c, alpha=0.15, lw=0)
        it = np.array(runs[0]["iterations"], float)
        ref = -0.5 if kind == "absolute" else -1.0
        g0 = next(r for r in runs if r["noise"] == kind)["gap_mean"][-1]
        ax.plot(it, g0 * (it / it[-1]) ** ref, ":", color="#000000", label=f"T^{ref:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("iteration T")
        ax.set_title(f"{kind} noise")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("restricted gap (ergodic avg.)")
    ax = axes[0][2]
    ks = result.data["K_scaling"]
    ax.plot([r["K"] for r in ks], [r["final_gap"] for r in ks], "o-", color=plotting.COLORS[0],
            label=f"QODA, gap ∝ K^{result.data['K_exponent']:.2f}")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("workers K")
    ax.set_title("absolute noise: K-scaling")
    ax.legend(fontsize=6)
    caption = ("Restricted gap at the ergodic average on a bilinear game (mean over seeds, ±2SE bands): "
               "T^-1/2 under absolute noise, T^-1 under relative noise; the noise term shrinks with K.")  # fmt: skip
    return plotting.save(fig, outdir, "convergence", caption)
