"""Experiment 2 (THEORY §7.2): code length.

For uniform levels, dimensions ``d`` and the dense / sparse protocols: the mean length of real
encoded streams against the exact expected length (THEORY §3), the entropy floor, QSGD's sparse
bound (Theorem 3.2 without its o(1)) and the tight worst-case expected dense length; plus a
layer-wise quantizer (three types).  Verdicts: measured mean within 6 standard errors of the exact
expectation everywhere (sample SE floored at float resolution; a case whose length never varies is
checked exactly, :func:`qodasim.quantize.check.mc_mean_check`); the dense payload above the entropy
floor (Shannon, per-symbol prefix code);
the dense payload below the tight worst case; sparse-ω below QSGD's bound for ``d ≥ 4096``; and the
sparse code's ``√d·log d`` growth (:func:`sparse_growth`, exact, no sampling): local log-log slopes of
the expected bits against ``d`` above ½ and falling, and ``bits/√d`` linear in ``ln d`` (``b > 0``)
within ``fit_tol`` where ``s ≪ √d``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import coding
from ..levels import Levels
from ..quantize import LayerLayout, LayerwiseQuantizer, Quantizer
from ..quantize.check import float_resolution, mc_mean_check
from ..rng import Key
from . import plotting
from .base import Param, Progress, Result, Verdict, check_config, metadata

NAME = "codelength"
#: Config keys (THEORY §7.2).
SCHEMA = {
    "seed": Param("int", 0, minimum=0),
    "code": Param("str", "omega", choices=("gamma", "delta", "omega")),
    "protocols": Param("str", ["dense", "sparse"], many=True, choices=("dense", "sparse")),
    "levels": Param("levels", many=True),
    "d": Param("int", many=True, minimum=1, maximum=2**22),
    "n_draws": Param("int", minimum=2, maximum=10**6),
    "slope_levels": Param("int", [2, 16], many=True, minimum=1, maximum=65535),
    "slope_d": Param("int", [2**12, 2**14, 2**16, 2**18, 2**20, 2**22], many=True, minimum=16, maximum=2**24),
    "fit_tol": Param("float", 0.01, minimum=0.0),
}
Z = 6.0


def _measure(quant, v, protocol, code, n, seed):
    bits = np.array([coding.encode(quant.quantize(v, Key(seed, 0, t)), protocol, code).nbits for t in range(n)])
    return bits, float(bits.mean()), float(bits.std(ddof=1) / np.sqrt(n))


def _z(bits, exact: float, d: int) -> tuple[float, str]:
    return mc_mean_check(bits, exact, None, float_resolution(d, exact))


def sparse_growth(s: int, dims, code: str, seed: int) -> dict:
    """Exact expected sparse payload bits of uniform ``s``-level quantization of Gaussian vectors at each
    ``d`` (no sampling), the local log-log slopes between consecutive ``d``, and the least-squares fit of
    ``bits/√d = a + b·ln d`` over ``d ≥ 1024 s²`` (``s/√d ≤ 1/32``: each of the ``≈ s√(2d/π)`` nonzeros
    costs a gap of ``≈ √d/s`` positions, ``log d`` bits) with its largest relative residual."""
    rng = np.random.default_rng(seed)
    quant = Quantizer(Levels.uniform(int(s)))
    dims = sorted(int(d) for d in dims)
    bits = np.array([coding.expected_bits(rng.standard_normal(d), quant, "sparse", code)["payload"] for d in dims])
    ld = np.log(np.array(dims, float))
    slopes = np.diff(np.log(bits)) / np.diff(ld)
    win = np.array(dims) >= 1024 * int(s) ** 2
    fit, resid = [float("nan")] * 2, float("nan")
    if win.sum() >= 3:
        y = bits[win] / np.sqrt(np.array(dims, float)[win])
        fit = np.polyfit(ld[win], y, 1)[::-1].tolist()
        resid = float(np.max(np.abs((fit[0] + fit[1] * ld[win]) / y - 1.0)))
    return {"s": int(s), "d": dims, "bits": bits.tolist(), "slopes": slopes.tolist(), "fit": fit,
            "fit_d": int(win.sum()), "fit_residual": resid}  # fmt: skip


def _case(quant, levels: Levels, spec: str, v: np.ndarray, protocol: str, code: str, n: int, seed: int):
    """``(row, z, note, sparse payload)``: ``n`` real streams of ``v`` against the exact expected length,
    with the entropy floor and (dense) the tight worst case or (sparse ω, uniform levels) QSGD's bound
    and the measured payload it bounds."""
    d = v.size
    bits, mean, se = _measure(quant, v, protocol, code, n, seed)
    exact = coding.expected_bits(v, quant, protocol, code)
    fixed = exact["header"] + exact["level_tables"] + exact["norms"]
    row = {"levels": spec, "d": d, "protocol": protocol, "measured": mean, "se": se,
           "exact": exact["total"], "fixed": fixed, "payload": exact["payload"],
           "entropy": coding.entropy_floor(v, quant)}  # fmt: skip
    if protocol == "dense":
        row["tight"] = coding.tight_expected_dense_bits(levels, d, code)
    if protocol == "sparse" and levels.uniform_s >= 2 and code == "omega":
        row["qsgd"] = coding.qsgd_sparse_bound(levels.uniform_s, d)
    z, note = _z(bits, exact["total"], d)
    return row, z, note, mean - exact["header"] - exact["level_tables"]


def _bound_checks(row: dict, sparse_payload: float, fails_entropy, fails_tight, fails_qsgd) -> None:
    """Append ``"levels d=…"`` to the failures of each bound the row breaks."""
    where = f"{row['levels']} d={row['d']}"
    if "tight" in row:
        if row["payload"] < row["entropy"] - 1e-9:
            fails_entropy.append(where)
        if row["payload"] > row["tight"] * (1 + 1e-9):
            fails_tight.append(where)
    if "qsgd" in row and row["d"] >= 4096 and sparse_payload > row["qsgd"]:
        fails_qsgd.append(where)


def run(config: dict, progress: bool = True) -> Result:
    config = check_config(NAME, SCHEMA, config)
    specs, dims = list(config["levels"]), [int(d) for d in config["d"]]
    protocols, code = list(config.get("protocols", ["dense", "sparse"])), str(config.get("code", "omega"))
    n, seed = int(config["n_draws"]), int(config.get("seed", 0))
    rng = np.random.default_rng(seed)
    rows, fails_mc, fails_entropy, fails_tight, fails_qsgd = [], [], [], [], []
    worst_z = 0.0
    bar = Progress(NAME, len(specs) * len(dims) * len(protocols) + 1, progress)
    for spec in specs:
        levels = Levels.parse(spec)
        quant = Quantizer(levels)
        for d in dims:
            v = rng.standard_normal(d)
            for protocol in protocols:
                row, z, note, sparse_payload = _case(quant, levels, spec, v, protocol, code, n, seed)
                worst_z = max(worst_z, z)
                if z >= Z:
                    fails_mc.append(f"{spec} d={d} {protocol}: mean {row['measured']:.6g} vs exact "
                                    f"{row['exact']:.6g} ({note})")  # fmt: skip
                _bound_checks(row, sparse_payload, fails_entropy, fails_tight, fails_qsgd)
                rows.append(row)
                bar.step()
    # layer-wise: three types with their own levels
    layout = LayerLayout([512, 2048, 256, 1024], [0, 1, 2, 1])
    lq = LayerwiseQuantizer(layout, (Levels.uniform(3), Levels.exponential(6), Levels.uniform(15)))
    v = np.concatenate([rng.standard_normal(sz) * sc for sz, sc in zip(layout.sizes, [1.0, 0.01, 10.0, 0.1])])
    layer_rows = []
    for protocol in protocols:
        bits, mean, se = _measure(lq, v, protocol, code, n, seed)
        exact = coding.expected_bits(v, lq, protocol, code)
        layer_rows.append({"protocol": protocol, "measured": mean, "se": se, "exact": exact["total"]})
        z, note = _z(bits, exact["total"], layout.d)
        worst_z = max(worst_z, z)
        if z >= Z:
            fails_mc.append(f"layer-wise {protocol}: mean {mean:.6g} vs exact {exact['total']:.6g} ({note})")
    bar.step()
    verdicts = [
        Verdict(
            "mean_equals_exact",
            not fails_mc,
            "; ".join(fails_mc)
            or f"max |mean − exact|/SE = {worst_z:.2f} < {Z} over {len(rows) + len(layer_rows)} cases × {n} streams",
        ),  # fmt: skip
        Verdict("above_entropy", not fails_entropy, "; ".join(fails_entropy) or "dense payload ≥ entropy floor"),
        Verdict("below_tight", not fails_tight, "; ".join(fails_tight) or "dense payload ≤ tight worst case"),
        Verdict("below_qsgd", not fails_qsgd, "; ".join(fails_qsgd) or "sparse-ω ≤ QSGD Thm 3.2 (d ≥ 4096)"),
    ]
    growth = [sparse_growth(s, config["slope_d"], code, seed) for s in config["slope_levels"]]
    tol = float(config["fit_tol"])
    bad = []
    for g in growth:
        sl = g["slopes"]
        if not (all(x > 0.5 for x in sl) and sl[-1] < sl[0] and g["fit"][1] > 0 and g["fit_residual"] <= tol):
            bad.append(g["s"])
    verdicts.append(Verdict(
        "sparse_slope_to_half", not bad,
        "exact sparse-" + code + " payload of uniform:s on Gaussian vectors, d = 2^"
        + "…2^".join(str(int(np.log2(d))) for d in (min(config["slope_d"]), max(config["slope_d"])))
        + ": local log-log slopes " + "; ".join(f"s = {g['s']}: " + " ".join(f"{x:.3f}" for x in g["slopes"])
                                               for g in growth)
        + " — each > ½ and the last below the first (→ ½ from above, THEORY §7.2); bits/√d = a + b·ln d with b > 0 "
        + "; ".join(f"(s = {g['s']}: b = {g['fit'][1]:.3g}, max residual {g['fit_residual']:.2%} over {g['fit_d']} "
                    f"d ≥ 1024s²)" for g in growth) + f" ≤ {tol:.0%}" + (f"; FAILED for s = {bad}" if bad else ""),
    ))  # fmt: skip
    return Result(NAME, config, {"rows": rows, "layerwise": layer_rows, "sparse_growth": growth}, verdicts,
                  metadata(seed))  # fmt: skip


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
