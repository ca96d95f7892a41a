"""Experiment 6 (THEORY §7.5, §8): wall-clock speed-up under a network model, against the paper's table.

QODA and Q-GenX run (K simulated workers, layer-wise quantization, real streams) on a layered problem.
Their oracle outputs at the last iterate, each layer's coordinates resampled to ``d_model``
coordinates (:func:`model_vectors`), give the bits per coordinate **at the modelled size** (exact
expected bits; header, level tables and norms are a large share at the runs' d = 552 and vanish at
4·10^6).  The network model (:mod:`qodasim.netlab.model`) turns them into seconds per iteration
for both collectives a compressed method can use — the ring all-gather, and the compressed
scatter-reduce-allgather (SRA, what the paper's system runs; :mod:`qodasim.solvers.sra`) — against a
float32 all-reduce for uncompressed QODA, over ``K ∈ Ks`` and ``bandwidths``, with a free codec
(GPU-like) and with this toolkit's CPU codec and reduction **measured on the machine that runs the
experiment** (``cpu_encode_ns``/``cpu_decode_ns``/``cpu_reduce_ns`` override the measurement).  The
paper's numbers (THEORY §8) are drawn beside.

Verdicts:

* ``collective_formulas``: the model — each collective's time, the bits each worker sends, the codec
  work and whole iterations of every method — equals an explicit message-by-message schedule of the
  ring all-reduce, the ring all-gather and SRA (:func:`schedule`; random sizes, unequal messages
  included), and a run's ledger-driven time equals the sum of its rounds.  Red when the all-reduce is
  charged ×K, the all-gather misses its ``K − 1`` steps or is counted twice, or SRA's re-quantization
  is not paid for;
* ``sra_variance``: SRA's aggregate ``Q_2(s)`` drawn ``sra_draws`` times at the runs' size: its mean
  squared error against ``ḡ`` equals the exact two-stage prediction (the draws' ``‖s − ḡ‖²`` plus the
  re-quantization's exact variance at each drawn ``s``) within 4 standard errors, and the draws'
  ``E‖s − ḡ‖²`` equals stage 1's exact variance within 4 standard errors.  Red when the
  re-quantization is skipped;
* ``paper_pattern``: with the paper's collective (SRA), this config's compute and the bits at
  ``d_model``, QODA's speed-up over uncompressed training grows with ``K`` from 4 to 12 and is larger
  at the lowest bandwidth (free codec).  The detail gives the all-gather's numbers beside, the inputs
  where each collective shows the pattern, SRA's extra variance at ``d_model`` (the price the
  speed-up "at equal iterations" leaves out) and what the measured CPU codec does.

With ``lab_Ks`` (the full setting) and a network lab on the machine (:mod:`qodasim.netlab`: root,
iproute2), the experiment also times real ranks at each ``K`` on links of ``lab_rate`` Gbit/s
(:func:`qodasim.netlab.clock.measure`, d = ``d_model``) and draws measured beside modelled seconds per
iteration; without a lab it records why.  On a machine with a GPU the codec is also timed with the
quantization on the GPU engine (``codec_gpu``, and tables ``gpu_engine_codec`` beside the free codec's);
elsewhere ``codec_gpu`` says why not.  These numbers depend on the machine and are not verdicts.

QODA also runs by SRA (the solver's ``collective="sra"``): the detail of ``paper_pattern`` puts its
final gap beside the all-gather run's at equal iterations, the assumption the speed-up tables make.
The runs' ledgers also give QODA's and Q-GenX's modelled seconds per iteration
(``per_iteration_from_ledger``); that QODA's are below Q-GenX's holds by construction (one message per
iteration against two) and is reported, not checked.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..coding import BitLedger
from ..netlab import model as netmodel
from ..netlab.model import COLLECTIVES, GBPS, MESSAGES, PAPER_SPEEDUP, Network, Workload, run_time, speedup
from ..quantize import LayerLayout, LayerwiseQuantizer
from ..solvers import SolverConfig, solve
from ..solvers.sra import chunk_bounds, piece_quantizer, sra_aggregate, sra_bits, sra_variance
from ..threads import serial
from ..vi import NoiseModel, layered_problem
from . import plotting
from .base import Param, Progress, Result, Verdict, check_config, metadata

NAME = "speedup"
#: Config keys (THEORY §8).
SCHEMA = {
    "seed": Param("int", 0, minimum=0),
    "T": Param("int", minimum=10, maximum=10**7),
    "K_run": Param("int", 4, minimum=2, maximum=64),
    "levels": Param("levels", ["uniform:3"], many=True),
    "sigma": Param("float", 0.5, minimum=0.0),
    "d_model": Param("int", minimum=1000, maximum=10**8),
    "compute": Param("float", minimum=0.0),
    "scaling": Param("str", "strong", choices=("strong", "weak")),
    "latency": Param("float", 5e-5, minimum=0.0),
    "bandwidths": Param("float", [1.0, 2.5, 5.0], many=True, minimum=1e-6),
    "Ks": Param("int", [4, 8, 12, 16], many=True, minimum=2, maximum=10**5),
    "sra_draws": Param("int", 400, minimum=20, maximum=10**6),
    "cpu_encode_ns": Param("float", None, minimum=0.0),
    "cpu_decode_ns": Param("float", None, minimum=0.0),
    "cpu_reduce_ns": Param("float", None, minimum=0.0),
    "lab_Ks": Param("int", None, many=True, minimum=2, maximum=16),
    "lab_rate": Param("float", 1.0, minimum=0.01, maximum=10.0),
}
#: A codec measurement is called noisy when its median repeat is this much above its best.
NOISY = 0.25
#: Standard errors a Monte Carlo mean may sit from its exact value (two checks per run).
Z_MAX = 4.0
COLLECTIVE_NAMES = {"allgather": "all-gather", "sra": "SRA"}


def _layered(seed: int):
    return layered_problem([96, 24, 384, 48], [1.0, 0.05, 4.0, 0.3], types=[0, 1, 0, 1], seed=seed)


def speedup_table(work: Workload, Ks, bandwidths, latency: float, collective: str = "allgather") -> dict:
    """``{method: {bandwidth: [speed-up at each K]}}`` for QODA and Q-GenX (baseline: uncompressed QODA),
    compressed messages travelling by ``collective``."""
    return {m: {bw_key(bw): [speedup(m, int(k), work, Network(bw * GBPS, latency), collective=collective)
                             for k in Ks] for bw in bandwidths}
            for m in ("qoda", "qgenx")}  # fmt: skip


def bw_key(bw: float) -> str:
    """The table key of a bandwidth in Gbps (``"2.5"``)."""
    return f"{float(bw):g}"


def pattern(table: dict, Ks, bandwidths) -> tuple[bool, str]:
    """The paper's pattern in a QODA speed-up table: growth with ``K`` from the first ``K`` to 12 (or
    the last ``K`` below it) at the highest bandwidth, and a larger speed-up at the lowest bandwidth."""
    Ks = [int(k) for k in Ks]
    hi, lo = max(bandwidths), min(bandwidths)
    upto = [i for i, k in enumerate(Ks) if k <= 12] or [0]
    s_hi = table["qoda"][bw_key(hi)]
    grows = all(s_hi[i + 1] > s_hi[i] for i in upto[:-1])
    low_bw = table["qoda"][bw_key(lo)][0] > s_hi[0]
    yes = {True: "yes", False: "no"}
    why = f"grows with K up to {Ks[upto[-1]]}: {yes[grows]}; larger at {lo:g} Gbps: {yes[low_bw]}"
    return bool(grows and low_bw), why


def pattern_region(Ks, bandwidths, latency: float, d_model: int, collective: str = "allgather") -> dict:
    """Which inputs reproduce the pattern: compute time (log grid) × bits per coordinate × scaling,
    free codec, compressed messages by ``collective``.  Returns the grid and a boolean map per scaling."""
    computes = np.logspace(-3, 1, 17)
    bits = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0])
    out = {"compute": computes.tolist(), "bits_per_coord": bits.tolist(), "holds": {}}
    for scaling in ("strong", "weak"):
        grid = [[pattern(speedup_table(Workload(d_model, float(c), scaling, float(b)), Ks, bandwidths, latency,
                                       collective), Ks, bandwidths)[0] for b in bits] for c in computes]  # fmt: skip
        out["holds"][scaling] = grid
    return out


def describe_region(region: dict, scaling: str) -> str:
    """``"1 bits/coord from 0.1 s; …"``: per bits value, the least compute where the pattern holds (and
    whether it then holds at every larger compute on the grid), or ``"no input on the grid"``."""
    grid = np.array(region["holds"][scaling], bool)
    parts = []
    for j, b in enumerate(region["bits_per_coord"]):
        col = grid[:, j]
        if col.any():
            i = int(np.argmax(col))
            tail = "" if col[i:].all() else " (not at every larger compute)"
            parts.append(f"{b:g} from {region['compute'][i]:.2g} s{tail}")
    return "; ".join(parts) if parts else "no input on the grid"


def measure_codec(d: int = 2**20, levels: str = "uniform:3", repeats: int = 5, seed: int = 0,
                  engine: str = "numba") -> dict:  # fmt: skip
    """This machine's codec on one core (:func:`qodasim.threads.serial`, as each rank of a job that
    shares the cores runs): seconds per coordinate to quantize + encode one Gaussian ``d``-vector
    (dense γ) and to decode + dequantize it.  With ``engine="cuda"`` the quantization runs on the GPU
    (the vector uploaded and the result downloaded each call) and the coding on the host, as the DDP
    hook does with gradients on a GPU.

    Returns ``{"encode", "decode", "reduce"}`` (best of ``repeats`` after a warm-up call; ``reduce``:
    adding a decoded vector into a float64 sum), the medians ``{"encode_median", "decode_median"}``,
    ``"spread"`` (the larger median/best − 1) and ``"noisy"`` (``spread > NOISY``: the machine was busy;
    the tables still use the best repeat).
    """
    import time

    from ..coding import Decoder, Encoder
    from ..levels import Levels
    from ..quantize import Quantizer
    from ..rng import Key

    v = np.random.default_rng(seed).standard_normal(d).astype(np.float32)
    quant = Quantizer(Levels.parse(levels), engine=engine)
    enc, dec, red = [], [], []
    acc = np.zeros(d)
    with serial():
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            msg = Encoder().encode(quant.quantize(v, Key(seed, 0, i)))
            t1 = time.perf_counter()
            x = Decoder().decode(msg).dequantize(np.float64)
            t2 = time.perf_counter()
            acc += x
            t3 = time.perf_counter()
            if i:
                enc.append((t1 - t0) / d)
                dec.append((t2 - t1) / d)
                red.append((t3 - t2) / d)
    out = {"encode": min(enc), "decode": min(dec), "reduce": min(red), "encode_median": float(np.median(enc)),
           "decode_median": float(np.median(dec)), "d": d, "repeats": repeats, "levels": levels,
           "engine": quant.engine}  # fmt: skip
    out["spread"] = max(out["encode_median"] / out["encode"], out["decode_median"] / out["decode"]) - 1
    out["noisy"] = bool(out["spread"] > NOISY)
    return out


def schedule(collective: str, K: int, net: Network, *, sizes=None, chunks=None, requant=None, d: float = 0.0,
             bits_per_value: int = 32) -> tuple[float, np.ndarray]:  # fmt: skip
    """An explicit message schedule of one collective, independent of the model's closed forms.

    Every step is a list of ``(sender, receiver, bits)``; a step lasts ``α`` plus its largest message
    over ``β`` (each worker's link carries one message per step).  ``"allreduce"``: ``2(K−1)`` ring steps
    of ``bits_per_value·d/K``-bit chunks; ``"allgather"``: ``K−1`` ring steps, in step ``s`` worker ``k``
    forwards the message of worker ``k − s`` (``sizes``); ``"sra"``: ``K−1`` steps in which worker ``k``
    sends its chunk ``k + s`` to worker ``k + s`` (``chunks[k][j]``), then the ring all-gather of the
    re-quantized chunks (``requant``).  Returns ``(seconds, bits sent by each worker)``.
    """
    ring = [(k, (k + 1) % K) for k in range(K)]
    if collective == "allreduce":
        steps = [[(a, b, bits_per_value * d / K) for a, b in ring] for _ in range(2 * (K - 1))]
    elif collective == "allgather":
        steps = [[(a, b, sizes[(a - s) % K]) for a, b in ring] for s in range(K - 1)]
    elif collective == "sra":
        steps = [[(k, (k + s) % K, chunks[k][(k + s) % K]) for k in range(K)] for s in range(1, K)]
        steps += [[(a, b, requant[(a - s) % K]) for a, b in ring] for s in range(K - 1)]
    else:
        raise ValueError(f"unknown collective {collective!r}")
    seconds, sent = 0.0, np.zeros(K)
    for step in steps:
        seconds += net.latency + max(bits for _, _, bits in step) / net.bandwidth
        for sender, _, bits in step:
            sent[sender] += bits
    return seconds, sent


def codec_coordinates(collective: str, K: int, d: int) -> tuple[int, int, int]:
    """Coordinates the busiest worker encodes, decodes and adds into a sum per message, counted from
    the schedule: all-gather — its vector, the ``K − 1`` others, the ``K − 1`` others; SRA — its vector
    and its chunk, the ``K − 1`` chunks it reduces and the ``K − 1`` it gathers, the ``K − 1`` chunks it
    reduces; ``"allreduce"`` — nothing, nothing, the ``K − 1`` chunks of its reduce-scatter."""
    own = np.diff(chunk_bounds(d, K))
    if collective == "allgather":
        return d, (K - 1) * d, (K - 1) * d
    if collective == "allreduce":
        return 0, 0, int(np.max((K - 1) * own))
    return int(np.max(d + own)), int(np.max((K - 1) * own + (d - own))), int(np.max((K - 1) * own))


def _close(a: float, b: float) -> bool:
    return bool(np.isclose(a, b, rtol=1e-12, atol=0))


def _check_case(rng: np.random.Generator) -> list[str]:
    """One random case of the model against :func:`schedule`; returns failures."""
    fails = []
    K = int(rng.integers(2, 33))
    net = Network(float(rng.uniform(0.1, 10)) * GBPS, float(rng.uniform(0, 1e-3)))
    d = K * int(rng.integers(1, 10**6))
    b1, b2 = float(rng.uniform(0.1, 8)), float(rng.uniform(0.1, 8))
    sizes = rng.uniform(0, b1 * d, K)
    chunks, requant = rng.uniform(0, b1 * d / K, (K, K)), rng.uniform(0, b2 * d / K, K)
    if not _close(netmodel.allgather_time(sizes, net), schedule("allgather", K, net, sizes=sizes)[0]):
        fails.append(f"all-gather time K={K}")
    if not _close(netmodel.sra_time(chunks, requant, net), schedule("sra", K, net, chunks=chunks, requant=requant)[0]):
        fails.append(f"SRA time K={K}")
    t_ar, sent_ar = schedule("allreduce", K, net, d=d)
    if not _close(netmodel.allreduce_time(d, K, net), t_ar):
        fails.append(f"all-reduce time K={K}")
    equal = {"allgather": schedule("allgather", K, net, sizes=[b1 * d] * K),
             "sra": schedule("sra", K, net, chunks=np.full((K, K), b1 * d / K), requant=[b2 * d / K] * K),
             "allreduce": (t_ar, sent_ar)}  # fmt: skip
    for coll, (_, sent) in equal.items():
        if not _close(netmodel.traffic(coll, K, d, b1, b2), sent.max()):
            fails.append(f"{coll} traffic K={K}")
    work = Workload(d, float(rng.uniform(0, 1)), str(rng.choice(["strong", "weak"])), b1,
                    float(rng.uniform(0, 5e-9)), float(rng.uniform(0, 5e-9)), requant_bits_per_coord=b2,
                    reduce_per_coord=float(rng.uniform(0, 2e-9)))  # fmt: skip
    seconds = {coll: t for coll, (t, _) in equal.items()}
    return fails + _check_iterations(work, K, net, seconds)


def _check_iterations(work: Workload, K: int, net: Network, seconds: dict) -> list[str]:
    """Whole iterations of every method by every collective (and uncompressed) against the oracles'
    compute, the codec and reduction work counted from the schedule, and the schedule's ``seconds``."""
    fails = []
    per_oracle = work.compute / K if work.scaling == "strong" else work.compute

    def local(coll):
        enc, dec, add = codec_coordinates(coll, K, work.d)
        return enc * work.encode_per_coord + dec * work.decode_per_coord + add * work.reduce_per_coord

    for method, m in MESSAGES.items():
        for coll in COLLECTIVES:
            want = m * (per_oracle + local(coll) + seconds[coll])
            if not _close(netmodel.iteration_time(method, True, K, work, net, coll)["total"], want):
                fails.append(f"{method} by {coll} K={K}")
        want = m * (per_oracle + local("allreduce") + seconds["allreduce"])
        if not _close(netmodel.iteration_time(method, False, K, work, net)["total"], want):
            fails.append(f"uncompressed {method} K={K}")
    return fails


def _formula_check(rng: np.random.Generator, cases: int = 50) -> list[str]:
    """The model against :func:`schedule` on ``cases`` random cases, and a ledger-driven run time
    against the sum of its rounds' all-gathers (synthetic ledger); returns failures."""
    fails = [f for _ in range(cases) for f in _check_case(rng)]
    K, n_rounds, net = 3, 7, Network(1e6, 1e-3)
    sizes = rng.integers(0, 10**5, (n_rounds, K))
    led = BitLedger()
    for r in range(n_rounds):
        for k in range(K):
            led.record(k, r, {"payload": float(sizes[r, k])})
    want = np.cumsum([schedule("allgather", K, net, sizes=sizes[r])[0] for r in range(n_rounds)])
    if not np.allclose(run_time(led, K, 10, Workload(10, 0.0), net), want, rtol=1e-12):
        fails.append("ledger-driven run time")
    return fails


def model_vectors(V, layout: LayerLayout, d_model: int, seed: int) -> tuple[np.ndarray, LayerLayout]:
    """The workers' vectors ``V`` (``(K, d)``) scaled to ``d_model`` coordinates: layer ``l`` gets
    ``≈ d_l·d_model/d`` coordinates, each a copy of one of the layer's coordinates drawn uniformly (the
    same draw for every worker, so the workers' common part is kept).  Returns float32 vectors and the
    scaled layout (same types)."""
    sizes = np.maximum(1, np.floor(layout.sizes * (d_model / layout.d))).astype(np.int64)
    sizes[int(np.argmax(sizes))] += d_model - int(sizes.sum())
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.integers(o, o + n, m) for o, n, m in zip(layout.offsets, layout.sizes, sizes)])
    return np.ascontiguousarray(np.asarray(V)[:, idx], np.float32), LayerLayout(
        sizes, layout.types, n_types=layout.n_types
    )


def sra_monte_carlo(V, quant, draws: int, seed: int) -> dict:
    """``draws`` SRA aggregates of ``V``: their mean squared error against ``ḡ`` beside its
    Rao–Blackwell prediction ``‖s − ḡ‖² + E‖Q_2(s) − s‖²`` (exact given each drawn ``s``), and the
    draws' ``‖s − ḡ‖²`` beside stage 1's exact variance; ``z`` scores from the draws' spread."""
    gbar = np.asarray(V, np.float64).mean(axis=0)
    pieces, _ = piece_quantizer(quant, gbar.size, len(V))  # Q_2, whose exact variance at s is stage 2's
    err, pred, first = np.empty(draws), np.empty(draws), np.empty(draws)
    for i in range(draws):
        r = sra_aggregate(V, quant, seed, i)
        err[i] = np.sum((r.aggregate - gbar) ** 2)
        first[i] = np.sum((r.mean - gbar) ** 2)
        pred[i] = first[i] + pieces.exact_variance(r.mean)
    exact = sra_variance(V, quant)
    diff = err - pred
    se_total, se_first = diff.std(ddof=1) / np.sqrt(draws), first.std(ddof=1) / np.sqrt(draws)
    z_first = float((first.mean() - exact["stage1"]) / max(se_first, 1e-300))
    return {"mse": float(err.mean()), "predicted": float(pred.mean()), "se": float(se_total),
            "z_total": float(diff.mean() / max(se_total, 1e-300)), "stage1_exact": exact["stage1"],
            "stage1_mc": float(first.mean()), "z_stage1": z_first, "allgather_exact": exact["allgather"],
            "draws": draws}  # fmt: skip


def model_size_bits(V, layout: LayerLayout, levels, d_model: int, seed: int) -> dict:
    """Bits per coordinate and variances at ``d_model``: the run's vectors scaled by
    :func:`model_vectors`, quantized layer-wise with ``levels``; all-gather messages and SRA's two stages
    (exact expected bits, dense Elias-γ), and the exact variance of each collective's aggregate."""
    Vm, lay = model_vectors(V, layout, d_model, seed)
    K = Vm.shape[0]
    quant = LayerwiseQuantizer(lay, tuple(levels))
    with serial():  # the same bits; no parallel kernels to compile for this one computation
        agg = sra_aggregate(Vm, quant, seed, 0)
        bits = sra_bits(Vm, quant, agg.mean)
        var = sra_variance(Vm, quant, agg.mean)
    gbar2 = float(np.sum(np.asarray(Vm, np.float64).mean(axis=0) ** 2))
    return {"d": d_model, "K": K, "allgather": float(bits["allgather"].mean() / d_model),
            "sra_stage1": float(bits["stage1"].sum() / (K * d_model)),
            "sra_stage2": float(bits["stage2"].sum() / d_model),
            "var_allgather": var["allgather"] / gbar2, "var_sra": (var["stage1"] + var["stage2"]) / gbar2,
            "var_sra_stage2": var["stage2"] / gbar2}  # fmt: skip


def _workload(bits: dict, config: dict, collective: str, codec: dict | None = None) -> Workload:
    """The modelled workload by ``collective`` with the bits at ``d_model`` (all-gather messages, or SRA's
    chunks and re-quantized chunks) and ``codec``'s seconds per coordinate (``None``: free)."""
    codec = codec or {"encode": 0.0, "decode": 0.0, "reduce": 0.0}
    b1 = bits["allgather"] if collective == "allgather" else bits["sra_stage1"]
    return Workload(int(config["d_model"]), float(config["compute"]), config["scaling"], b1, codec["encode"],
                    codec["decode"], requant_bits_per_coord=bits["sra_stage2"], bits_from_d=int(config["d_model"]),
                    reduce_per_coord=codec["reduce"])  # fmt: skip


def _tables(bits: dict, config: dict, codec: dict) -> dict:
    """Speed-up tables ``{codec: {collective: table}}`` with the bits at ``d_model``."""
    Ks, bws, lat = config["Ks"], config["bandwidths"], float(config["latency"])
    return {name: {coll: speedup_table(_workload(bits, config, coll, c), Ks, bws, lat, coll) for coll in COLLECTIVES}
            for name, c in (("gpu_codec", None), ("cpu_codec", codec))}  # fmt: skip


def _codec(config: dict) -> dict:
    """The configured CPU codec, or this machine's measured one (a warning when the measurement is noisy)."""
    if config["cpu_encode_ns"] is not None and config["cpu_decode_ns"] is not None:
        return {"encode": config["cpu_encode_ns"] * 1e-9, "decode": config["cpu_decode_ns"] * 1e-9,
                "reduce": (config["cpu_reduce_ns"] or 0.0) * 1e-9, "source": "config"}  # fmt: skip
    codec = measure_codec() | {"source": "measured on this machine"}
    if codec["noisy"]:
        warnings.warn(f"the CPU codec measurement is noisy (median {codec['spread'] * 100:.0f}% above the best "
                      "repeat; the machine is busy): the CPU-codec tables use the best repeat",
                      stacklevel=2)  # fmt: skip
    return codec


def _gpu_codec() -> dict:
    """The codec with the quantization on this machine's GPU (:func:`measure_codec` with
    ``engine="cuda"``), or ``{"unavailable": why}`` (no GPU; the CUDA simulator is not timed)."""
    from ..quantize.core import cuda_available

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return {"unavailable": "the CUDA simulator is not a GPU: not timed"}
    if not cuda_available():
        return {"unavailable": "no GPU here (numba-cuda finds no device)"}
    return measure_codec(engine="cuda") | {"source": "measured on this machine's GPU engine"}


def _ledger_times(runs: dict, config: dict, d_run: int, bpc: float) -> dict:
    """Modelled seconds per iteration of each run from its own ledger (every message one all-gather)."""
    work = Workload(int(config["d_model"]), float(config["compute"]), config["scaling"], bpc)
    T, out = int(config["T"]), {}
    for bw in config["bandwidths"]:
        for K in config["Ks"]:
            net = Network(bw * GBPS, float(config["latency"]))
            out[f"{bw:g}/{K}"] = {m: float(run_time(runs[m].ledger, K, d_run, work, net, rpi)[-1] / T)
                                  for m, rpi in (("qoda", 1), ("qgenx", 2))}  # fmt: skip
    return out


def _fmt(xs) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


def run(config: dict, progress: bool = True) -> Result:
    config = check_config(NAME, SCHEMA, config)
    seed, T, K_run = int(config["seed"]), int(config["T"]), int(config["K_run"])
    Ks, bws, d_model = config["Ks"], config["bandwidths"], int(config["d_model"])
    problem = _layered(seed)
    levels = tuple(config["levels"]) * (problem.layout.n_types if len(config["levels"]) == 1 else 1)
    bar = Progress(NAME, 6, progress)
    runs, run_bits = {}, {}
    noise = NoiseModel("absolute", float(config["sigma"]))
    for method, coll in (("qoda", "allgather"), ("qgenx", "allgather"), ("qoda-sra", "sra")):
        cfg = SolverConfig(method=method.split("-")[0], K=K_run, T=T, compression="layerwise", levels=levels,
                           noise=noise, seed=seed, record=10, collective=coll)  # fmt: skip
        runs[method] = solve(problem, cfg)
        run_bits[method] = float(runs[method].ledger.total() / runs[method].ledger.messages() / problem.d)
        bar.step()
    gaps = {m: float(runs[m].measures["gap_avg"][0, -1]) for m in ("qoda", "qoda-sra")}
    fails = _formula_check(np.random.default_rng(seed))
    # the workers' oracle outputs at QODA's last iterate: the vectors SRA and the model-size bits use
    x = np.asarray(runs["qoda"].x_last, np.float64).reshape(-1, problem.d)[:1]
    V = noise.sample_at(problem, x, K_run, seed, 2**40)[0]
    quant = LayerwiseQuantizer(problem.layout, tuple(runs["qoda"].quantizer.type_levels))
    mc = sra_monte_carlo(V, quant, int(config["sra_draws"]), seed)
    bar.step()
    bits = model_size_bits(V, problem.layout, quant.type_levels, d_model, seed)
    codec = _codec(config)
    tables = _tables(bits, config, codec)
    regions = {c: pattern_region(Ks, bws, float(config["latency"]), d_model, c) for c in COLLECTIVES}
    bar.step()
    paper = PAPER_SPEEDUP["qoda"]
    top = bw_key(max(bws))
    holds = {c: pattern(tables["gpu_codec"][c], Ks, bws) for c in COLLECTIVES}
    ours = {c: tables["gpu_codec"][c]["qoda"][top] for c in COLLECTIVES}
    cpu = {c: [x for row in tables["cpu_codec"][c]["qoda"].values() for x in row] for c in COLLECTIVES}
    ok_mc = abs(mc["z_total"]) < Z_MAX and abs(mc["z_stage1"]) < Z_MAX
    codec_note = (f"CPU codec {codec['encode'] * 1e9:.2f} / {codec['decode'] * 1e9:.2f} / {codec['reduce'] * 1e9:.2f} "
                  "ns per coordinate to encode / decode / add "
                  f"({codec['source']}{', noisy' if codec.get('noisy') else ''})")  # fmt: skip
    verdicts = [
        Verdict("collective_formulas", not fails, "; ".join(fails[:3]) or
                "the model's all-reduce, all-gather and SRA times, each worker's traffic, the codec work and whole "
                "iterations of every method equal an explicit message schedule of each collective on 50 random "
                "cases (unequal messages included); a run's ledger-driven time = the sum of its rounds"),
        Verdict("sra_variance", ok_mc,
                f"SRA aggregate at the runs' size (d = {problem.d}, K = {K_run}, {mc['draws']} draws): mean squared "
                f"error {mc['mse']:.4g} vs predicted {mc['predicted']:.4g} (z = {mc['z_total']:.2f}); stage 1 "
                f"E‖s − ḡ‖² {mc['stage1_mc']:.4g} vs exact {mc['stage1_exact']:.4g} (z = {mc['z_stage1']:.2f}); "
                f"|z| < {Z_MAX:g}. The all-gather's aggregate has variance {mc['allgather_exact']:.4g}: SRA's is "
                f"{mc['predicted'] / mc['allgather_exact']:.2f}x it here, "
                f"{bits['var_sra'] / bits['var_allgather']:.2f}x at d = {d_model:.3g}"),
        Verdict("paper_pattern", holds["sra"][0],
                f"SRA, {bits['sra_stage1']:.3f} + {bits['sra_stage2']:.3f} bits/coord (stage 1 + re-quantized chunks, "
                f"exact at d = {d_model:.3g}), compute {config['compute']:g} s ({config['scaling']} scaling), free "
                f"codec: {holds['sra'][1]} — QODA {_fmt(ours['sra'])} at K = {list(Ks)}, {max(bws):g} Gbps, vs the "
                f"paper's {_fmt(paper[k] for k in Ks if k in paper)}. All-gather at {bits['allgather']:.3f} "
                f"bits/coord: {holds['allgather'][1]} — {_fmt(ours['allgather'])}. The runs' own messages are "
                f"{run_bits['qoda']:.2f} bits/coord at d = {problem.d} (header, tables and norms). Inputs where the "
                f"pattern holds (strong scaling, bits/coord from compute): SRA "
                f"{describe_region(regions['sra'], 'strong')}; all-gather "
                f"{describe_region(regions['allgather'], 'strong')}. Equal iterations assume equal "
                f"progress, but SRA's aggregate has {bits['var_sra'] / bits['var_allgather']:.2f}x the all-gather's "
                f"variance at d = {d_model:.3g}. With the {codec_note}: QODA is {min(cpu['sra']):.2f}–"
                f"{max(cpu['sra']):.2f}x uncompressed by SRA, {min(cpu['allgather']):.2f}–{max(cpu['allgather']):.2f}x "
                f"by all-gather. At equal iterations the runs' QODA (T = {T}, d = {problem.d}) ends at restricted gap "
                f"{gaps['qoda-sra']:.4g} by SRA against {gaps['qoda']:.4g} by all-gather "
                f"({gaps['qoda-sra'] / gaps['qoda']:.2f}x)"),
    ]  # fmt: skip
    bar.step()
    gpu = _gpu_codec()
    if "unavailable" not in gpu:  # the tables with the GPU engine's codec beside the free one
        tables["gpu_engine_codec"] = {coll: speedup_table(_workload(bits, config, coll, gpu), config["Ks"],
                                                          config["bandwidths"], float(config["latency"]), coll)
                                      for coll in COLLECTIVES}  # fmt: skip
    data = {"lab": _lab(config), "bits_per_coord_run": run_bits, "d_run": problem.d, "model_size": bits,
            "codec": codec, "codec_gpu": gpu, "tables": tables,
            "per_iteration_from_ledger": _ledger_times(runs, config, problem.d, run_bits["qoda"]),
            "breakdown_top_bandwidth": _breakdown(bits, config), "regions": regions, "sra_monte_carlo": mc,
            "paper": {m: {str(k): v for k, v in t.items()} for m, t in PAPER_SPEEDUP.items()},
            "pattern": {c: holds[c][1] for c in COLLECTIVES}, "final_gap": gaps, "Ks": list(Ks),
            "bandwidths": list(bws)}  # fmt: skip
    bar.step()
    return Result(NAME, config, data, verdicts, metadata(seed))


def _lab(config: dict) -> dict | None:
    """Measured and modelled seconds per iteration of real ranks in a network lab (``lab_Ks``), or why
    there is no lab here (``{"unavailable": reason}``); ``None`` when not asked for."""
    if not config["lab_Ks"]:
        return None
    from ..netlab import unavailable
    from ..netlab.clock import measure

    reason = unavailable()
    if reason is not None:
        return {"unavailable": reason}
    levels = tuple(config["levels"]) * (2 if len(config["levels"]) == 1 else 1)
    return {"runs": [measure(K=int(K), rate_gbit=float(config["lab_rate"]), d=int(config["d_model"]),
                             compute=float(config["compute"]), levels=levels, seed=int(config["seed"]))
                     for K in config["lab_Ks"]]}  # fmt: skip


def _breakdown(bits: dict, config: dict) -> dict:
    """Compute / codec / communication seconds per iteration at the highest bandwidth (free codec)."""
    net = Network(max(config["bandwidths"]) * GBPS, float(config["latency"]))
    out = {}
    for coll in COLLECTIVES:
        work = _workload(bits, config, coll)
        for m in ("qoda", "qgenx"):
            out[f"{m}-{coll}"] = {str(K): netmodel.iteration_time(m, True, K, work, net, coll) for K in config["Ks"]}
    work = Workload(int(config["d_model"]), float(config["compute"]), config["scaling"])
    out["qoda-uncompressed"] = {str(K): netmodel.iteration_time("qoda", False, K, work, net) for K in config["Ks"]}
    return out


def plot(result: Result, outdir: Path) -> list[Path]:
    data = result.data
    Ks, bws = data["Ks"], data["bandwidths"]
    lab = (data.get("lab") or {}).get("runs")
    fig, axes = plotting.figure(ncols=4 if lab else 3, width=3.1, height=2.7)
    panels = (("gpu_codec", "sra", "SRA, free codec"), ("gpu_codec", "allgather", "all-gather, free codec"),
              ("cpu_codec", "sra", "SRA, this CPU's codec"))  # fmt: skip
    for ax, (codec, coll, title) in zip(axes[0], panels):
        table = data["tables"][codec][coll]
        for i, bw in enumerate(bws):
            c = plotting.COLORS[i % len(plotting.COLORS)]
            ax.plot(Ks, table["qoda"][bw_key(bw)], "o-", color=c, label=f"QODA {bw:g} Gbps")
            ax.plot(Ks, table["qgenx"][bw_key(bw)], "s--", color=c, alpha=0.7, label=f"Q-GenX {bw:g} Gbps")
        for m, mk in (("qoda", "*"), ("qgenx", "x")):
            pk = sorted(int(k) for k in data["paper"][m])
            ax.plot(pk, [data["paper"][m][str(k)] for k in pk], mk, color="#000000", ms=8,
                    label=f"paper, {'QODA' if m == 'qoda' else 'Q-GenX'}")  # fmt: skip
        ax.axhline(1.0, color="#999999", lw=0.8)
        ax.set_xticks(Ks)
        ax.set_xlabel("workers K")
        ax.set_title(title)
    axes[0][0].set_ylabel("speed-up over uncompressed")
    axes[0][2].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if lab:
        _plot_lab(axes[0][3], lab)
    ms = data["model_size"]
    caption = (
        f"Modelled speed-up over uncompressed QODA (float32 all-reduce) at d = {ms['d']:.3g}, bits per coordinate "
        f"exact at that size (SRA {ms['sra_stage1']:.2f} + {ms['sra_stage2']:.2f}, all-gather {ms['allgather']:.2f}); "
        "black markers: the paper's numbers; third: SRA with the CPU codec measured on the machine that ran it"
        + ("; right: seconds per iteration of real ranks in a network lab, measured (bars) and modelled (dots)."
           if lab else ".")
    )  # fmt: skip
    return plotting.save(fig, outdir, "speedup", caption)


def _plot_lab(ax, runs: list) -> None:
    """Measured (bars) and modelled (dots) seconds per iteration of every mode at every lab ``K``."""
    modes = list(runs[0]["modes"])
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        x = np.arange(len(modes)) + (i - (len(runs) - 1) / 2) * width
        c = plotting.COLORS[i % len(plotting.COLORS)]
        ax.bar(x, [run["modes"][m]["measured"] for m in modes], width * 0.9, color=c, alpha=0.6,
               label=f"K = {run['K']} measured")  # fmt: skip
        ax.plot(x, [run["modes"][m]["modelled"] for m in modes], "o", color=c, ms=4, label=f"K = {run['K']} model")
    ax.set_xticks(range(len(modes)))
    names = {"allreduce": "uncompressed", "allgather": "QODA all-gather", "sra": "QODA SRA",
             "qgenx-allgather": "Q-GenX all-gather", "qgenx-sra": "Q-GenX SRA"}  # fmt: skip
    ax.set_xticklabels([names.get(m, m) for m in modes], fontsize=6, rotation=35, ha="right")
    ax.set_ylabel("seconds per iteration")
    ax.set_title(f"network lab, {runs[0]['rate_gbit']:g} Gbit/s links")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
