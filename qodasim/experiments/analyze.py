"""``qodasim analyze``: which quantization scheme pays per bit on *your* model's gradients.

Input: one or more gradient snapshots — ``.npz`` files of named arrays (what
:class:`qodasim.torch.GradientRecorder` writes, or ``np.savez(path, **grads)``), a torch-saved dict
of tensors (with the ``torch`` extra), or mappings / pytrees of arrays in Python.  Every snapshot
must hold the same names and shapes.

Output, per snapshot and budget (bits per coordinate), for every scheme of
:mod:`qodasim.optimize.schemes` under every code: the exact normalized variance
``E‖Q(v)−v‖²/‖v‖²``, each layer's relative error ``E‖Q(v_l)−v_l‖²/‖v_l‖²``, the exact expected bits,
the bits of one real Elias-γ stream of the chosen quantizer (:func:`qodasim.coding.encode`), and the
network model's communication time per iteration (ring all-gather of the messages at ``K`` workers
and ``gbps``, against the fp32 and fp16 ring all-reduce; THEORY §8); fp16 and bf16 rounding as
reference points; per-layer statistics; the layer types chosen and why.  :meth:`Analysis.save`
writes ``analysis.md``, ``analysis.json`` and ``analysis.png``/``.pdf``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..coding import encode
from ..netlab.model import Network, allgather_time, allreduce_time
from ..optimize.autotype import auto_types_of
from ..optimize.schemes import CODES, at_budget, scheme_curve, scheme_names
from ..quantize import LayerLayout
from ..quantize.layers import first_rule, named_arrays, parse_rules, roles_present, types_of
from ..rng import Key
from ..validate import check_int
from .base import Progress, atomic_write_text, metadata, strict_json

__all__ = ["Analysis", "analyze", "load_gradients"]


def load_gradients(path) -> dict[str, np.ndarray]:
    """Named arrays from an ``.npz`` file, or a torch-saved dict of tensors (``.pt``/``.pth``; needs
    torch).  Raises ``ValueError`` naming the file when it cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"GRADS: {str(path)!r} is not a file")
    if p.suffix in (".pt", ".pth"):
        try:
            import torch
        except ImportError:
            raise ValueError(
                f"GRADS: {str(path)!r} is a torch file; install torch (pip install torch==2.13.0)"
            ) from None
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a bad file
            raise ValueError(f"GRADS: cannot read {str(path)!r}: {exc}") from None
        if not isinstance(obj, Mapping):
            raise ValueError(f"GRADS: {str(path)!r} must hold a dict of tensors, got {type(obj).__name__}")
        return named_arrays(obj, f"GRADS {p.name}")
    if not zipfile.is_zipfile(p):
        raise ValueError(f"GRADS: {str(path)!r} is not an .npz file (np.savez writes one)")
    try:
        with np.load(p, allow_pickle=False) as z:
            return named_arrays({k: z[k] for k in z.files}, f"GRADS {p.name}")
    except (OSError, ValueError, EOFError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith("GRADS"):
            raise
        raise ValueError(f"GRADS: cannot read {str(path)!r} as .npz: {exc}") from None


def _snapshot(x, i: int) -> tuple[str, dict[str, np.ndarray]]:
    if isinstance(x, (str, Path)):
        return Path(x).name, load_gradients(x)
    return f"snapshot{i}", named_arrays(x, f"grads[{i}]")


def layer_stats(name: str, a: np.ndarray) -> dict:
    """Size, shape, norm, RMS, exact-zero fraction and tail (max/RMS; share of the energy in the
    largest 1% of coordinates) of one layer."""
    x = np.asarray(a, np.float64).reshape(-1)
    e = x * x
    norm = float(np.sqrt(e.sum()))
    rms = norm / np.sqrt(x.size)
    top = max(1, x.size // 100)
    share = float(np.sort(e)[-top:].sum() / e.sum()) if e.sum() > 0 else float("nan")
    return {"name": name, "shape": list(np.shape(a)), "size": int(x.size), "norm": norm, "rms": rms,
            "zeros": float(np.mean(x == 0)), "max_over_rms": float(np.abs(x).max() / rms) if rms > 0 else float("nan"),
            "top1pct_energy": share}  # fmt: skip


def _bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (round to nearest, ties to even), returned as float32."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def _rounding_errors(v: np.ndarray, layout: LayerLayout) -> dict:
    """fp16 and bf16 (deterministic rounding): normalized squared error and per-layer relative error."""
    out = {}
    energy = np.add.reduceat(v * v, layout.offsets[:-1])
    for name, r in (("fp16", v.astype(np.float16).astype(np.float64)), ("bf16", _bf16(v).astype(np.float64))):
        with np.errstate(over="ignore", invalid="ignore"):
            err = (r - v) ** 2
        per = np.add.reduceat(err, layout.offsets[:-1])
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(energy > 0, per / energy, np.nan)
        out[name] = {"bits": 16.0, "variance": float(err.sum() / np.dot(v, v)), "layer_rel": rel.tolist(),
                     "overflow": bool(np.any(~np.isfinite(r)))}  # fmt: skip
    return out


def _types(first: dict[str, np.ndarray], types, auto_options: Mapping | None) -> tuple[np.ndarray, dict]:
    """The type of each layer, and why (``{"rule", "per_type", ...}``)."""
    if types == "auto":
        t, found = auto_types_of(first, auto_options)
        why = {"rule": "auto: qodasim.optimize.auto_types (held-out mean quantization variance plus the level "
               "tables' cost, the fewest types within 5% of the best score)"}  # fmt: skip
        if found is not None:
            why["scores"] = {str(m): sc for m, sc in found.scores.items()}
        return t, why
    t = types_of(first, types)
    if types is None or types == "none":
        return t, {"rule": "none: one type for every layer"}
    if types == "role":
        return t, {"rule": "role: by shape and name (conv kernels, embeddings, matrices, vectors)",
                   "per_type": {str(m): r for m, r in enumerate(roles_present(first)[1])}}  # fmt: skip
    if isinstance(types, str):
        rules = parse_rules(types)
        return t, {"rule": f"rules: {types}", "matched": {n: first_rule(n, rules)[0] for n in first}}
    return t, {"rule": "given by the caller"}


@dataclass
class Analysis:
    """What :func:`analyze` found (``rows``: one per snapshot × budget × code × scheme)."""

    layout: LayerLayout
    snapshots: list[str]
    layers: list[list[dict]]
    types_why: dict
    rows: list[dict]
    references: list[dict]
    network: dict
    meta: dict = field(default_factory=dict)
    #: ``(snapshot, budget, code, scheme)`` → the quantizer of that row (not saved).
    quantizers: dict = field(default_factory=dict, repr=False)

    def best(self, snapshot: int = 0, budget: float | None = None, code: str = "gamma",
             metric: str = "variance") -> dict | None:  # fmt: skip
        """The row of least ``metric`` (``"variance"`` or ``"mean_layer_rel"``) at one budget and code."""
        budget = self.meta["bits"][0] if budget is None else budget
        rows = [r for r in self.rows if r["snapshot"] == snapshot and r["budget"] == budget and r["code"] == code]
        return min(rows, key=lambda r: r[metric]) if rows else None

    def to_dict(self) -> dict:
        """Everything but the quantizers, as strict JSON (``analysis.json``)."""
        return strict_json({
            "snapshots": self.snapshots, "layers": self.layers, "types": self.layout.types.tolist(),
            "types_why": self.types_why, "rows": self.rows, "references": self.references, "network": self.network,
            "meta": self.meta,
        })  # fmt: skip

    def markdown(self) -> str:
        """The report: types, per-layer statistics, then a table per budget."""
        m = self.meta
        lines = [f"# qodasim analyze: {', '.join(self.snapshots)}", "",
                 f"{self.layout.n_layers} layers, d = {self.layout.d:,} coordinates, {self.layout.n_types} types "
                 f"({self.types_why['rule']}).  Budgets {m['bits']} bits/coordinate; codes {', '.join(m['codes'])}.  "
                 "Every variance and expected bit count is exact (no sampling); `stream` is the bits of one real "
                 "Elias-γ stream of that quantizer.  Lower is better in every column.", "",
                 "## Layers (first snapshot)", "",
                 "| layer | shape | type | norm | RMS | zeros | max/RMS | top-1% energy |",
                 "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for s, t in zip(self.layers[0], self.layout.types.tolist()):
            lines.append(f"| {s['name']} | {tuple(s['shape'])} | {t} | {s['norm']:.4g} | {s['rms']:.3g} | "
                         f"{s['zeros']:.3f} | {s['max_over_rms']:.3g} | {s['top1pct_energy']:.3f} |")  # fmt: skip
        if "scores" in self.types_why:
            lines += [
                "",
                "Types by score (M: score, held-out variance, table bits): "
                + "; ".join(
                    f"{k}: {v['score']:.4g}, {v['mqv']:.4g}, {v['table_bits']}"
                    for k, v in self.types_why["scores"].items()
                ),
            ]
        net = self.network
        lines += ["", f"Network model: K = {net['K']} workers, {net['gbps']:g} Gbit/s, latency {net['latency']:g} s; "
                  f"fp32 all-reduce {net['fp32_allreduce_s'] * 1e3:.3g} ms, fp16 all-reduce "
                  f"{net['fp16_allreduce_s'] * 1e3:.3g} ms per iteration (communication only)."]  # fmt: skip
        for si, snap in enumerate(self.snapshots):
            ref = self.references[si]
            for budget in m["bits"]:
                lines += ["", f"## {snap}: {budget:g} bits/coordinate", "",
                          "| scheme | " + " | ".join(f"{c}: bits · variance · mean layer rel." for c in m["codes"])
                          + " | γ stream bits | comm (ms, γ) |",
                          "|---|" + "---:|" * (len(m["codes"]) + 2)]  # fmt: skip
                for scheme in m["schemes"]:
                    cells, stream, comm = [], "—", "—"
                    for c in m["codes"]:
                        r = next((r for r in self.rows if r["snapshot"] == si and r["budget"] == budget
                                  and r["code"] == c and r["scheme"] == scheme), None)  # fmt: skip
                        if r is None:
                            cells.append("— (no level set fits)")
                            continue
                        cells.append(f"{r['bits']:.3f} · {r['variance']:.4g} · {r['mean_layer_rel']:.4g}")
                        if c == "gamma":
                            stream = f"{r['stream_bits']:.3f}"
                            comm = f"{r['comm_s'] * 1e3:.3g}"
                    lines.append(f"| {scheme} | " + " | ".join(cells) + f" | {stream} | {comm} |")
                for name in ("fp16", "bf16"):
                    x = ref[name]
                    lines.append(f"| {name} (reference) | 16 · {x['variance']:.3g} · "
                                 f"{np.nanmean(x['layer_rel']):.3g} |" + " |" * (len(m["codes"]) + 1))  # fmt: skip
        lines += ["", f"qodasim {m.get('qodasim', '')}; {m.get('seconds', 0):.1f} s."]
        return "\n".join(lines) + "\n"

    def plot(self, outdir) -> list[Path]:
        """Variance and mean per-layer relative error against bits per coordinate (Elias-γ), first snapshot."""
        from .plotting import COLORS, figure, save

        fig, axes = figure(2, 1, width=3.4, height=2.7)
        for k, scheme in enumerate(self.meta["schemes"]):
            mine = (r for r in self.rows if r["snapshot"] == 0 and r["code"] == "gamma" and r["scheme"] == scheme)
            rows = sorted(mine,
                          key=lambda r: r["budget"])  # fmt: skip
            if not rows:
                continue
            x = [r["bits"] for r in rows]
            style = {"color": COLORS[k % len(COLORS)], "marker": "os^vD<>ph*"[k % 10], "ms": 3.5, "lw": 1.2,
                     "ls": "-" if k < len(COLORS) else "--", "label": scheme}  # fmt: skip
            axes[0, 0].plot(x, [r["variance"] for r in rows], **style)
            axes[0, 1].plot(x, [r["mean_layer_rel"] for r in rows], **style)
        for ax, ylab in zip(axes[0], ("whole-vector variance", "mean per-layer relative error")):
            ax.set_yscale("log")
            ax.set_xlabel("bits per coordinate (Elias-γ)")
            ax.set_ylabel(ylab)
        axes[0, 1].legend(fontsize=6, ncol=2)
        cap = (f"Exact error against exact expected bits on {self.snapshots[0]} ({self.layout.n_layers} layers, "
               f"d = {self.layout.d:,}): each scheme at the budgets {self.meta['bits']} bits/coordinate.")  # fmt: skip
        return save(fig, Path(outdir), "analysis", cap)

    def save(self, outdir) -> list[Path]:
        """Write ``analysis.md``, ``analysis.json`` and the figure into ``outdir``."""
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [atomic_write_text(out / "analysis.md", self.markdown()),
                 atomic_write_text(out / "analysis.json", json.dumps(self.to_dict(), indent=1) + "\n")]  # fmt: skip
        return paths + self.plot(out)


def _check_bits(bits) -> list[float]:
    try:
        out = [float(b) for b in bits]
    except (TypeError, ValueError):
        raise ValueError(f"bits must be numbers, got {bits!r}") from None
    if not out or any(not (np.isfinite(b) and 0 < b <= 64) for b in out):
        raise ValueError(f"bits must be budgets in (0, 64] bits per coordinate, got {bits!r}")
    return sorted(set(out))


def _check_codes(codes) -> list:
    """The codes asked for, each one of :data:`CODES`."""
    codes = list(codes)
    for c in codes:
        if c not in CODES:
            raise ValueError(f"codes: unknown code {c!r} (known: {', '.join(CODES)})")
    return codes


def _check_snapshots(snaps) -> None:
    """Every snapshot with the first one's named arrays and shapes, finite, and not all zero."""
    first = snaps[0][1]
    for label, snap in snaps:
        if list(snap) != list(first) or any(snap[n].shape != first[n].shape for n in first):
            raise ValueError(f"GRADS: {label} does not hold the same named arrays as {snaps[0][0]}")
        for n, a in snap.items():
            if not np.all(np.isfinite(a)):
                raise ValueError(f"GRADS: {label}: layer {n!r} has non-finite values (NaN or inf)")
        if not any(np.any(a) for a in snap.values()):
            raise ValueError(f"GRADS: {label}: every gradient is zero")


def _check_schemes(schemes, layout: LayerLayout) -> list:
    """The schemes asked for (default: every one that applies to ``layout``)."""
    known = list(scheme_names(layout))
    names = known if schemes is None else list(schemes)
    for s in names:
        if s not in known:
            raise ValueError(f"schemes: {s!r} is not one of {', '.join(known)} for this layout")
    return names


def _row(p, v: np.ndarray, layout: LayerLayout, where: tuple, K: int, net, seed: int) -> dict:
    """One result row: scheme ``p`` at ``(snapshot, scheme index, budget, code, scheme)``; for the
    Elias-γ code also the bits of a real encoded stream."""
    si, sj, budget, c, scheme = where
    d = layout.d
    row = {"snapshot": si, "budget": budget, "code": c, "scheme": scheme,
           "alpha": list(p.alpha) if isinstance(p.alpha, tuple) else p.alpha,
           "bits": p.bits[c], "variance": p.variance, "mean_layer_rel": p.mean_layer_rel,
           "max_layer_rel": float(np.nanmax(p.layer_rel)), "layer_rel": p.layer_rel.tolist(),
           "comm_s": allgather_time([p.bits[c] * d] * K, net)}  # fmt: skip
    if c == "gamma":
        msg = encode(p.quantizer.quantize(v, Key(seed, si, sj)))
        row["stream_bits"] = (msg.bits["payload"] + msg.bits["norms"]) / d
    return row


def analyze(grads, bits: Sequence[float] = (1, 2, 3, 4), types="auto", K: int = 16, gbps: float = 10.0,
            codes: Sequence[str] = CODES, schemes: Sequence[str] | None = None, seed: int = 0,
            progress: bool = False, auto_options: Mapping | None = None) -> Analysis:  # fmt: skip
    """Compare quantization schemes at equal bits on gradient snapshots (see the module docstring).

    Parameters
    ----------
    grads : path, mapping or sequence of them
        One snapshot (an ``.npz``/``.pt`` path, a mapping or pytree of named arrays) or several.
    bits : sequence of float
        Budgets in bits per coordinate (payload and norms; level tables left out).
    types : None, "role", "auto", rules, mapping or sequence
        The layer → type map (:mod:`qodasim.quantize.layers`), fitted on the first snapshot.
    K, gbps : int, float
        Workers and link bandwidth of the network model.
    codes, schemes : sequences of str
        Subsets of :data:`~qodasim.optimize.schemes.CODES` and :data:`~qodasim.optimize.schemes.SCHEMES`.
    seed : int
        Key seed of the real encoded streams.
    """
    import time

    t0 = time.perf_counter()
    items = list(grads) if isinstance(grads, (list, tuple)) and grads and not _is_array(grads[0]) else [grads]
    snaps = [_snapshot(x, i) for i, x in enumerate(items)]
    budgets = _check_bits(bits)
    codes = _check_codes(codes)
    _check_snapshots(snaps)
    first = snaps[0][1]
    check_int(K, "K", 1)
    net = Network(float(gbps) * 1e9)
    t, why = _types(first, None if types == "none" else types, auto_options)
    shapes = tuple(tuple(a.shape) for a in first.values())
    layout = LayerLayout([a.size for a in first.values()], t, names=tuple(first), shapes=shapes)
    names = _check_schemes(schemes, layout)
    bar = Progress("analyze", len(snaps) * len(names), enabled=progress)
    rows, layers, refs, quantizers = [], [], [], {}
    for si, (_, snap) in enumerate(snaps):
        v = layout.flatten(snap, np.float64)
        layers.append([layer_stats(n, a) for n, a in snap.items()])
        refs.append(_rounding_errors(v, layout))
        for sj, scheme in enumerate(names):
            curve = scheme_curve(v, layout, scheme, max(budgets), codes)
            bar.step()
            for budget, c in ((b, c) for b in budgets for c in codes):
                p = at_budget(curve, v, layout, budget, c)
                if p is not None:
                    quantizers[si, budget, c, scheme] = p.quantizer
                    rows.append(_row(p, v, layout, (si, sj, budget, c, scheme), K, net, seed))
    bar.close()
    d = layout.d
    network = {"K": int(K), "gbps": float(gbps), "latency": net.latency,
               "fp32_allreduce_s": allreduce_time(d, K, net, 32),
               "fp16_allreduce_s": allreduce_time(d, K, net, 16)}  # fmt: skip
    meta = metadata(seed)
    meta.update({"bits": budgets, "codes": codes, "schemes": names, "seconds": round(time.perf_counter() - t0, 2)})
    return Analysis(layout, [label for label, _ in snaps], layers, why, rows, refs, network, meta, quantizers)


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or (hasattr(x, "shape") and hasattr(x, "dtype"))
