"""Experiment 1 (THEORY §7.1): unbiasedness and variance.

For each level sequence and dimension ``d``: the Monte Carlo normalized variance of a random
Gaussian vector against the exact formula (THEORY §2), and the exact variance against the worst-case
bounds (QSGD for uniform levels, natural dithering for base-2 exponential levels, the simple bound
for any sequence).  Verdicts: the rounding law holds exactly (binomial up-counts, Bonferroni-adjusted
p ≥ 1e-6 over all coordinates and settings; see :func:`qodasim.quantize.check.rounding_test`), the
Monte Carlo variance is within 6 standard errors of the exact one, and the exact variance is never
above a bound.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import bounds
from ..levels import Levels
from ..quantize import Quantizer
from ..quantize.check import rounding_test
from ..rng import Key
from . import plotting
from .base import Progress, Result, Verdict, metadata

NAME = "variance"
Z = 6.0
BOUND_COLORS = {"qsgd": plotting.COLORS[2], "natural_dithering": plotting.COLORS[4], "simple": plotting.COLORS[3],
                "tight": plotting.COLORS[6]}  # fmt: skip


def _bounds_for(levels: Levels, d: int) -> dict[str, float]:
    out = {"simple": bounds.simple_bound(levels, d)}
    if levels.uniform_s:
        out["qsgd"] = bounds.qsgd_bound(levels.uniform_s, d)
    lv = levels.values
    if lv.size > 2 and np.array_equal(lv[1:], 2.0 ** np.arange(-(lv.size - 2), 1)):
        out["natural_dithering"] = bounds.natural_dithering_bound(levels.s, d)
    return out


def run(config: dict, progress: bool = True) -> Result:
    specs = list(config["levels"])
    dims = [int(d) for d in config["d"]]
    n_draws = int(config["n_draws"])
    seed = int(config.get("seed", 0))
    rng = np.random.default_rng(seed)
    rows = []
    bar = Progress(NAME, len(specs) * len(dims), progress)
    min_p, worst_var_z, bound_violations, grid_ok = 1.0, 0.0, [], True
    for spec in specs:
        levels = Levels.parse(spec)
        quant = Quantizer(levels)
        for d in dims:
            v = rng.standard_normal(d)
            v /= np.linalg.norm(v)
            exact = quant.exact_variance(v, normalized=True)
            draws = np.stack([quant(v, Key(seed, 0, t)) for t in range(n_draws)])
            err = ((draws - v) ** 2).sum(axis=1) / float(np.dot(v, v))
            mc, se = float(err.mean()), float(err.std(ddof=1) / np.sqrt(n_draws))
            law = rounding_test(quant, v, n_draws, seed)
            n_settings = len(specs) * len(dims)
            min_p = min(min_p, law["adjusted_p"] * n_settings)
            grid_ok &= law["on_grid"] and law["identity"] < 1e-12 and law["mean_gap"] < 1e-12
            if se > 0:
                worst_var_z = max(worst_var_z, abs(mc - exact) / se)
            bnds = _bounds_for(levels, d)
            for bname, b in bnds.items():
                if exact > b * (1 + 1e-12):
                    bound_violations.append(f"{spec} d={d}: exact {exact:.4g} > {bname} {b:.4g}")
            rows.append({"levels": spec, "d": d, "exact": exact, "mc": mc, "mc_se": se, "bounds": bnds})
            bar.step()
    verdicts = [
        Verdict("unbiased", grid_ok and min_p >= 1e-6, f"rounding law: adjusted binomial p = {min(min_p, 1):.3g}"),
        Verdict("mc_equals_exact", worst_var_z < Z, f"max |MC − exact|/SE = {worst_var_z:.2f} < {Z}"),
        Verdict("below_bounds", not bound_violations, "; ".join(bound_violations) or "exact ≤ every bound"),
    ]
    return Result(NAME, config, {"rows": rows}, verdicts, metadata(seed))


def plot(result: Result, outdir: Path) -> list[Path]:
    rows = result.data["rows"]
    specs = list(dict.fromkeys(r["levels"] for r in rows))
    fig, axes = plotting.figure(ncols=len(specs), width=2.6, height=2.5)
    for ax, spec in zip(axes[0], specs):
        rs = [r for r in rows if r["levels"] == spec]
        d = np.array([r["d"] for r in rs])
        ax.plot(d, [r["exact"] for r in rs], color=plotting.COLORS[0], label="exact E‖Q(v)−v‖²")
        ax.errorbar(d, [r["mc"] for r in rs], yerr=[2 * r["mc_se"] for r in rs], fmt="o", color=plotting.COLORS[1],
                    mfc="none", label="Monte Carlo ±2SE")  # fmt: skip
        for bname in sorted(rs[0]["bounds"]):
            ax.plot(d, [r["bounds"][bname] for r in rs], "--", color=BOUND_COLORS[bname], label=f"{bname} bound")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("dimension d")
        ax.set_title(spec)
        ax.legend(loc="upper left", fontsize=6)
    axes[0][0].set_ylabel("normalized variance")
    caption = (
        "Normalized variance of unbiased stochastic rounding on a random unit Gaussian vector: Monte Carlo "
        "(markers) matches the exact formula (line) and stays below the worst-case bounds (dashed)."
    )
    return plotting.save(fig, outdir, "variance", caption)
