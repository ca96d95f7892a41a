"""Experiment 9 (THEORY §7.3): does layer-wise quantization pay **per bit**?

Layers of two types (type 1 scaled by ``1/r``; with ``shape = "spiky"`` its layers are also sparse,
10% nonzero, the nonzeros ×3 so that the RMS is kept).

**Regime map (exact, no sampling).**  One vector per (layer-size factor ``f``, ratio ``r``, shape):
layers of ``f·sizes`` coordinates, Gaussian (the layered problem's operator output is Gaussian per
coordinate; drawing it directly lets the layers grow without building ``O(d_l³)`` blocks), type 1
scaled by ``1/r``.  For each budget ``B`` bits per coordinate (payload + norms, exact expected Elias
lengths): the exact normalized variance ``E‖Q(v) − v‖²/‖v‖²`` of the global quantizer (one norm, one
level sequence) against the layer-wise one (one norm per layer, one sequence per type), each read at
``B`` on its variance–bits curve over ``α`` (:func:`qodasim.experiments.budget.at_bits`).  Gain = global /
layer-wise variance (``> 1``: layer-wise wins per bit), for uniform and for variance-optimal levels;
and the gain of per-type levels alone (``scope = "global"``: the global quantizer's single norm, so
no extra norm bits; with uniform levels this *is* the global quantizer, gain 1 by construction).

**Inside QODA.**  At one ``(r, B)``: uncompressed, global, layer-wise (uniform and optimized levels,
each picked by :func:`~qodasim.experiments.budget.levels_for_budget` to meet ``B``) and layer-wise with the
L-GreCo policy (:class:`~qodasim.solvers.LGreCo`, starting from the uniform layer-wise levels, error
budget = theirs) on the same seeds, no oracle noise (the quantizer's is the only noise); gap against
cumulative bits per coordinate, read at equal total bits and at equal iterations, 95% bootstrap
intervals over the replicas.

Verdicts: (1) ``lgreco_fewer_bits``: L-GreCo sends fewer bits per iteration than its start and ends
with a gap no worse (its mean ≤ the start's upper interval end); (2) ``homogeneous_no_gain``: with
identical types (``r = 1``, same shape) per-type optimized levels gain nothing per bit (levels-only
gain within ``1 ± homogeneous_tol`` at every budget and size); (3) ``solver_agrees_with_map``: the exact
map's winner at the solver's ``(r, B)`` (uniform levels, size factor 1) is the method with the lower gap
at equal total bits in QODA, intervals disjoint; (4) ``per_type_levels_fit``: each type's own optimized
levels beat type 0's levels given to every type at equal ``α`` (exact variances; :func:`per_type_fit`)
— red when the per-type fit silently reuses one type's levels, which the per-bit gains cannot show.
Where layer-wise wins is a finding, reported in the detail and in the README.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..quantize import LayerLayout
from ..solvers import LGreCo, SolverConfig
from ..vi import NoiseModel, layered_problem
from . import plotting
from .base import Param, Progress, Result, Verdict, check_config, metadata
from .budget import at_bits, compare, levels_for_budget, mean_ci, variance_bits_curve

NAME = "equalbits"
#: Config keys (THEORY §7.3).
SCHEMA = {
    "seed": Param("int", 0, minimum=0),
    "sizes": Param("int", [64, 16, 256, 32, 128, 8], many=True, minimum=1, maximum=2**20),
    "types": Param("int", [0, 1, 0, 1, 0, 1], many=True, minimum=0, maximum=1),
    "ratios": Param("float", [1.0, 3.0, 10.0, 100.0], many=True, minimum=1.0),
    "shapes": Param("str", ["same", "spiky"], many=True, choices=("same", "spiky")),
    "budgets": Param("float", [2.0, 3.0, 4.0], many=True, minimum=0.5, maximum=32.0),
    "size_factors": Param("int", [1, 16], many=True, minimum=1, maximum=4096),
    "alphas": Param(
        "int", [0, 1, 2, 3, 4, 5, 6, 8, 10, 14, 20, 30, 46, 62, 94, 126, 190, 254], many=True, minimum=0, maximum=254
    ),
    "homogeneous_tol": Param("float", 0.1, minimum=0.0),
    "solver_ratio": Param("float", 10.0, minimum=1.0),
    "solver_budget": Param("float", 3.0, minimum=0.5, maximum=32.0),
    "K": Param("int", 4, minimum=1, maximum=10**4),
    "T": Param("int", minimum=30, maximum=10**7),
    "replicas": Param("int", minimum=2, maximum=10**4),
    "lgreco_every": Param("int", 50, minimum=1),
}

KINDS = ("uniform", "optimized")


def setup(sizes, types, ratio: float, seed: int):
    """The layered problem (type 1 scaled by ``1/ratio``) and one oracle output ``v`` at a random point."""
    problem = layered_problem(sizes, [1.0 if t == 0 else 1.0 / ratio for t in types], types=types, seed=seed)
    v = problem.operator(np.random.default_rng(seed + 1).standard_normal((1, problem.d)))[0]
    return problem, v


def map_vector(sizes, types, ratio: float, shape: str, seed: int):
    """``(layout, v)`` of one map point: Gaussian layers of ``sizes``, type 1 scaled by ``1/ratio``, type-1
    layers sparsified for ``shape = "spiky"`` (the same draws for every ratio)."""
    layout = LayerLayout([int(x) for x in sizes], [int(t) for t in types])
    rng = np.random.default_rng([seed, layout.d])
    v = rng.standard_normal(layout.d)
    for l in range(layout.n_layers):
        if types[l] == 1:
            sl = layout.layer_slice(l)
            v[sl] /= ratio
            if shape == "spiky":
                v[sl] *= (rng.random(sl.stop - sl.start) < 0.1) * 3.0
    return layout, v


def regime_map(config: dict, bar=None) -> list[dict]:
    """The exact gains per bit for every (size factor, shape, ratio, budget)."""
    rows = []
    alphas = [int(a) for a in config["alphas"]]
    for f in config["size_factors"]:
        for shape in config["shapes"]:
            for r in config["ratios"]:
                layout, v = map_vector([int(f) * s for s in config["sizes"]], config["types"], float(r), shape,
                                       int(config["seed"]))  # fmt: skip
                curves = {}
                for kind in KINDS:
                    curves[kind] = {
                        "global": variance_bits_curve(v, None, alphas, kind),
                        "layerwise": variance_bits_curve(v, layout, alphas, kind),
                        "levels_only": variance_bits_curve(v, layout, alphas, kind, scope="global"),
                    }
                for B in config["budgets"]:
                    row = {"size_factor": int(f), "d": layout.d, "shape": shape, "ratio": float(r), "budget": float(B)}
                    for kind, c in curves.items():
                        g = at_bits(c["global"], B)
                        row[f"gain_{kind}"] = g / at_bits(c["layerwise"], B)
                        row[f"gain_levels_{kind}"] = g / at_bits(c["levels_only"], B)
                    rows.append(row)
                if bar:
                    bar.step()
    return rows


#: The per-type fit's check: no ratio below ``1 − FIT_TOL`` (the histogram optimizer is near-optimal,
#: not exact) and some ratio at least ``1 + FIT_MARGIN`` (the types differ, so their levels must).
FIT_TOL, FIT_MARGIN = 1e-3, 0.02
FIT_ALPHAS = (1, 2, 3, 6)


def per_type_fit(config: dict, seed: int) -> list[dict]:
    """Each type's own optimized levels against type 0's levels for every type, at equal ``α``: the
    exact normalized variances' ratio (shared / own) on every map vector of size factor 1, both scopes.

    Own levels are fitted to each type's magnitudes, so the ratio is ``≥ 1`` (up to the optimizer's
    error); it is 1 everywhere only if the fit ignores the types — the plausible bug of a per-type
    optimizer that hands every type type 0's levels, which no per-bit gain can reveal."""
    from ..quantize import LayerwiseQuantizer
    from .budget import _quantizer

    out = []
    for shape in config["shapes"]:
        for ratio in config["ratios"]:
            layout, v = map_vector(config["sizes"], config["types"], float(ratio), shape, seed)
            for scope in ("layer", "global"):
                for alpha in FIT_ALPHAS:
                    own = _quantizer(v, layout, alpha, "optimized", 2.0, "histogram", scope)
                    shared = LayerwiseQuantizer(layout, (own.type_levels[0],) * layout.n_types, scope=scope)
                    ratio_ = shared.exact_variance(v, normalized=True) / own.exact_variance(v, normalized=True)
                    out.append({"shape": shape, "ratio": float(ratio), "scope": scope, "alpha": alpha,
                                "shared_over_own": float(ratio_)})  # fmt: skip
    return out


def map_finding(rows: list[dict], size_factor: int) -> str:
    """One sentence on the map at one layer-size factor: where layer-wise (per-layer norms and per-type
    levels) wins per bit, and where per-type levels alone (one norm) do."""
    pts = [x for x in rows if x["size_factor"] == size_factor]
    if not pts:
        return f"size ×{size_factor}: no map points"

    def best(key):
        ok = [x for x in pts if np.isfinite(x[key])]
        return max(ok, key=lambda x: x[key]) if ok else None

    def where(x, key):
        return f"{x[key]:.2f}x ({x['shape']}, r = {x['ratio']:g}, B = {x['budget']:g})" if x else "n/a"

    def count(*keys):
        return sum(1 for x in pts if any(x[k] > 1.0 for k in keys))

    return (
        f"size ×{size_factor} (d = {pts[0]['d']}): layer-wise wins per bit at "
        f"{count('gain_uniform', 'gain_optimized')} of {len(pts)} points (best "
        f"{where(best('gain_optimized'), 'gain_optimized')} optimized, "
        f"{where(best('gain_uniform'), 'gain_uniform')} uniform), per-type optimized levels alone at "
        f"{count('gain_levels_optimized')} (best {where(best('gain_levels_optimized'), 'gain_levels_optimized')})"
    )


def run(config: dict, progress: bool = True) -> Result:
    config = check_config(NAME, SCHEMA, config)
    seed = int(config["seed"])
    sizes, types = [int(s) for s in config["sizes"]], [int(t) for t in config["types"]]
    if len(sizes) != len(types) or set(types) != {0, 1}:
        raise ValueError("equalbits config: sizes and types need equal lengths and both types 0 and 1")
    config = {**config, "sizes": sizes, "types": types}
    if 1 not in config["size_factors"]:
        raise ValueError("equalbits config: size_factors must include 1 (the solver's layer sizes)")
    n_map = len(config["size_factors"]) * len(config["shapes"]) * len(config["ratios"])
    bar = Progress(NAME, n_map + 5, progress)
    rows = regime_map(config, bar)

    # --- inside QODA at one (ratio, budget)
    r, B = float(config["solver_ratio"]), float(config["solver_budget"])
    problem, v = setup(sizes, types, r, seed)
    K, T, R = int(config["K"]), int(config["T"]), int(config["replicas"])
    lv = {kind: levels_for_budget(v, problem.layout, B, kind) for kind in KINDS}
    gl = levels_for_budget(v, None, B, "uniform")[0]
    base = {"method": "qoda", "K": K, "T": T, "noise": NoiseModel("absolute", 0.0), "replicas": R, "seed": seed,
            "record": 30}  # fmt: skip
    specs = {k: tuple(x.to_spec() for x in lv[k]) for k in KINDS}
    configs = {
        "uncompressed": SolverConfig(**base),
        "global": SolverConfig(compression="global", levels=gl.to_spec(), **base),
        "layerwise": SolverConfig(compression="layerwise", levels=specs["uniform"], **base),
        "layerwise_optimized": SolverConfig(compression="layerwise", levels=specs["optimized"], **base),
        "lgreco": SolverConfig(compression="layerwise", levels=specs["uniform"],
                               policy=LGreCo(every=int(config["lgreco_every"])), **base),
    }  # fmt: skip
    comp = compare(problem, configs)
    bar.step(5)
    common = comp.common_bits([n for n in configs if n != "uncompressed"])
    runs = {}
    for name, res in comp.results.items():
        b, g = comp.cumulative(name)
        runs[name] = {"status": res.status, "bits_per_coord": mean_ci(comp.bits_per_coord(name), seed=seed),
                      "final_gap": mean_ci(comp.gap_at_iteration(name), seed=seed),
                      "gap_at_common_bits": mean_ci(comp.gap_at_bits(name, common), seed=seed),
                      "bits": b.mean(axis=0).tolist(), "gap": g.mean(axis=0).tolist(),
                      "gap_lo": np.quantile(g, 0.025, axis=0).tolist(),
                      "gap_hi": np.quantile(g, 0.975, axis=0).tolist(),
                      "iterations": res.iterations.tolist()}  # fmt: skip

    # --- verdicts
    lg, st = runs["lgreco"], runs["layerwise"]
    fewer = lg["bits_per_coord"][2] < st["bits_per_coord"][1] and lg["final_gap"][0] <= st["final_gap"][2]
    hom = [x for x in rows if x["shape"] == "same" and x["ratio"] == 1.0]
    tol = float(config["homogeneous_tol"])
    hom_gains = [x["gain_levels_optimized"] for x in hom]
    hom_ok = bool(hom) and all(np.isfinite(g) and abs(g - 1.0) <= tol for g in hom_gains)
    here = [x for x in rows if x["size_factor"] == 1 and x["shape"] == "same" and x["ratio"] == r and x["budget"] == B]
    gw, lw = runs["global"]["gap_at_common_bits"], runs["layerwise"]["gap_at_common_bits"]
    if here and np.isfinite(here[0]["gain_uniform"]):
        map_says_global = here[0]["gain_uniform"] < 1.0
        agree = (gw[2] < lw[1]) if map_says_global else (lw[2] < gw[1])
        agree_detail = (f"exact map at r = {r:g}, B = {B:g}: global/layer-wise variance per bit "
                        f"{here[0]['gain_uniform']:.2f} (winner: {'global' if map_says_global else 'layer-wise'}); "
                        f"QODA at {common:.0f} bits/coord: global {gw[0]:.4g} [{gw[1]:.4g}, {gw[2]:.4g}], "
                        f"layer-wise {lw[0]:.4g} [{lw[1]:.4g}, {lw[2]:.4g}]")  # fmt: skip
    else:
        agree, agree_detail = False, f"the map has no point at r = {r:g}, B = {B:g} (add them to ratios and budgets)"
    finding = "; ".join(map_finding(rows, f) for f in config["size_factors"])
    fit = per_type_fit(config, seed)
    fit_r = np.array([x["shared_over_own"] for x in fit])
    fit_ok = bool(fit_r.min() >= 1 - FIT_TOL and fit_r.max() >= 1 + FIT_MARGIN)
    regime = f"layered problem d = {problem.d}, QODA K = {K}, T = {T}, {R} seeds, no oracle noise, 95% bootstrap CI"
    ok = all(x["status"] == "ok" for x in runs.values())
    verdicts = [
        Verdict("lgreco_fewer_bits", bool(fewer and ok),
                f"L-GreCo inside QODA: {lg['bits_per_coord'][0]:.3f} bits/coord/iter [{lg['bits_per_coord'][1]:.3f}, "
                f"{lg['bits_per_coord'][2]:.3f}] vs its uniform start {st['bits_per_coord'][0]:.3f} "
                f"[{st['bits_per_coord'][1]:.3f}, {st['bits_per_coord'][2]:.3f}]; final gap {lg['final_gap'][0]:.4g} "
                f"vs {st['final_gap'][0]:.4g} [{st['final_gap'][1]:.4g}, {st['final_gap'][2]:.4g}] (no worse); "
                f"r = {r:g}, B = {B:g}; {regime}"),
        Verdict("homogeneous_no_gain", hom_ok,
                f"identical types (r = 1, same shape): per-type optimized levels' gain per bit "
                f"{', '.join(f'{g:.3f}' for g in hom_gains)} within 1 ± {tol:g} (budgets {config['budgets']}, "
                f"size factors {config['size_factors']})"),
        Verdict("solver_agrees_with_map", bool(agree and ok),
                f"{agree_detail}; {finding} — counts of this map's design only (one α for every type, Elias-γ, "
                f"whole-vector variance, no buckets; the realnets experiment varies code, metric, allocation and "
                f"baseline)"),
        Verdict("per_type_levels_fit", fit_ok,
                f"each type's own optimized levels vs type 0's levels for every type, equal α ∈ {list(FIT_ALPHAS)}, "
                f"exact variance ratio shared/own over {len(fit)} cases (shapes {config['shapes']}, ratios "
                f"{config['ratios']}, per-layer and single norm): min {fit_r.min():.4f} (≥ {1 - FIT_TOL:g}), max "
                f"{fit_r.max():.4f} (≥ {1 + FIT_MARGIN:g}: the fit sees the types)"),
    ]  # fmt: skip
    curves = {
        name: variance_bits_curve(v, lay, config["alphas"], kind, scope=scope).tolist()
        for name, (lay, kind, scope) in {
            "global": (None, "uniform", "layer"),
            "layerwise": (problem.layout, "uniform", "layer"),
            "layerwise_optimized": (problem.layout, "optimized", "layer"),
            "levels_only_optimized": (problem.layout, "optimized", "global"),
        }.items()
    }
    data = {"map": rows, "per_type_fit": fit, "runs": runs, "common_bits": common, "solver_ratio": r,
            "solver_budget": B, "curves": curves,
            "levels": {k: [x.to_spec() for x in lv[k]] for k in KINDS}, "global_levels": gl.to_spec()}  # fmt: skip
    return Result(NAME, config, data, verdicts, metadata(seed))


def plot(result: Result, outdir: Path) -> list[Path]:
    data = result.data
    shapes = list(dict.fromkeys(x["shape"] for x in data["map"]))
    factors = sorted({x["size_factor"] for x in data["map"]})
    budgets = sorted({x["budget"] for x in data["map"]})
    fig, axes = plotting.figure(ncols=len(shapes) + 1, nrows=2, width=3.1, height=2.6)
    styles = ["o--", "s-", "^-.", "d:"]
    for row, (key, what) in enumerate((("gain_optimized", "layer-wise (norm per layer, levels per type)"),
                                       ("gain_levels_optimized", "levels per type only (one norm)"))):  # fmt: skip
        for ax, shape in zip(axes[row], shapes):
            for i, B in enumerate(budgets):
                for j, f in enumerate(factors):
                    pts = sorted((x for x in data["map"] if x["shape"] == shape and x["budget"] == B
                                  and x["size_factor"] == f), key=lambda x: x["ratio"])  # fmt: skip
                    ax.plot(
                        [x["ratio"] for x in pts],
                        [x[key] for x in pts],
                        styles[j % len(styles)],
                        color=plotting.COLORS[i],
                        label=f"{B:g} bits/coord, d = {pts[0]['d'] if pts else '?'}",
                    )
            ax.axhline(1.0, color="#777777", ls=":")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("scale ratio r between the two types")
            ax.set_title(f"{what}\ntype-1 layers {'Gaussian' if shape == 'same' else 'sparse (10%)'}", fontsize=8)
            ax.legend(fontsize=5)
        axes[row][0].set_ylabel("gain per bit (global / layer-wise var.)")
    ax = axes[0][-1]
    labels = {"uncompressed": ("#777777", "uncompressed"), "global": (plotting.COLORS[1], "global, uniform"),
              "layerwise": (plotting.COLORS[0], "layer-wise, uniform"),
              "layerwise_optimized": (plotting.COLORS[4], "layer-wise, optimized (QODA)"),
              "lgreco": (plotting.COLORS[2], "layer-wise, L-GreCo"),
              "levels_only_optimized": (plotting.COLORS[3], "levels per type, one norm")}  # fmt: skip
    for name, run in data["runs"].items():
        c, label = labels[name]
        b = np.array(run["bits"])
        ax.plot(b, run["gap"], color=c, label=f"{label} ({run['bits_per_coord'][0]:.2f} b/c/it)")
        ax.fill_between(b, run["gap_lo"], run["gap_hi"], color=c, alpha=0.15, lw=0)
    ax.axvline(data["common_bits"], color="#777777", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("cumulative bits / coordinate / worker")
    ax.set_ylabel("restricted gap (ergodic avg.)")
    ax.set_title(f"QODA, r = {data['solver_ratio']:g}, budget {data['solver_budget']:g} bits", fontsize=8)
    ax.legend(fontsize=5)
    ax = axes[1][-1]
    for name, curve in data.get("curves", {}).items():
        c, label = labels[name]
        cv = np.array(curve)
        ax.plot(cv[:, 0], cv[:, 1], ".-", color=c, label=label)
    ax.axvline(data["solver_budget"], color="#777777", ls=":", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("bits / coordinate (payload + norms, exact)")
    ax.set_ylabel("E‖Q(v) − v‖² / ‖v‖² (exact)")
    ax.set_title("one oracle output of the QODA problem", fontsize=8)
    ax.legend(fontsize=5)
    caption = (
        "Layer-wise vs global quantization at equal bits. Left: exact variance gain per bit (>1: layer-wise wins) "
        "against the scale ratio between two layer types, for two layer sizes (marker); top: per-layer norms and "
        "per-type optimal levels, bottom: per-type levels under one norm. Right: QODA's gap against bits sent, and "
        "the exact variance-bits curves of its oracle output."
    )
    return plotting.save(fig, outdir, "equalbits", caption)
