"""The ``qodasim`` command: reproduce the theory figures, run one config, print bounds.

User errors (a bad config, an unknown experiment, an unwritable output folder, bad numbers) print one
line ``qodasim: error: …`` and exit with status 2; Ctrl-C prints one line and exits with 130.
Output folders are checked before any computation.  ``results.md`` is rebuilt after every experiment
from all the result files present, so it never disagrees with them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from . import experiments
from .experiments.base import atomic_write_text, load_results, results_table


class UserError(ValueError):
    """A problem with what the user asked for (reported in one line, exit status 2)."""


def _writable(folder: Path, what: str) -> None:
    """Create ``folder`` and prove it is writable, before computing anything; else a :class:`UserError`
    that starts with ``what``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"{what}: {exc.strerror or exc}") from None


def _check_outdir(out: str) -> tuple[Path, Path]:
    """``out`` and ``out/results``, created and writable."""
    outdir = Path(out)
    _writable(outdir / "results", f"--out {out!r} is not a writable folder")
    return outdir, outdir / "results"


def _check_outfile(out: str) -> None:
    """``out`` (a path prefix: ``out.npz`` and ``out.json`` are written) must lie in a writable folder."""
    _writable(Path(out).parent, f"--out {out!r}: cannot write into {str(Path(out).parent)!r}")


def _run_one(name: str, config: dict, setting: str, outdir: Path, results_dir: Path, progress: bool):
    mod = experiments.get(name)
    t0 = time.perf_counter()
    result = mod.run(config, progress=progress)
    result.meta["seconds"] = round(time.perf_counter() - t0, 2)
    result.meta["setting"] = setting
    result.save(results_dir / f"{name}.json")
    paths = mod.plot(result, outdir)
    return result, paths


def _summary(results) -> str:
    lines = ["| experiment | verdict | check | detail |", "|---|---|---|---|"]
    for res in results:
        if (res.meta or {}).get("skipped"):
            lines.append(f"| {res.experiment} | SKIP | — | {res.meta['skipped']} |")
        for v in res.verdicts:
            status = "PASS" if v.passed else "FAIL"
            lines.append(f"| {res.experiment} | {status} | {v.name} | {v.detail} |")
    return "\n".join(lines)


def _rebuild_table(outdir: Path, results_dir: Path) -> None:
    atomic_write_text(outdir / "results.md", results_table(load_results(results_dir, experiments.REGISTRY)))


def cmd_reproduce(args) -> int:
    setting = "quick" if args.quick else "full"
    names = args.only or list(experiments.REGISTRY)
    configs = [experiments.load_config(name, setting) for name in names]  # every config checked first
    outdir, results_dir = _check_outdir(args.out)
    results = []
    t0 = time.perf_counter()
    for name, config in configs:
        print(f"[{name}] ({setting})", file=sys.stderr)
        res, paths = _run_one(name, config, setting, outdir, results_dir, not args.no_progress)
        results.append(res)
        _rebuild_table(outdir, results_dir)
        for p in paths:
            print(f"  wrote {p}", file=sys.stderr)
    print(_summary(results))
    skipped = sum(bool((r.meta or {}).get("skipped")) for r in results)
    ran = len(results) - skipped
    print(f"\n{sum(r.passed for r in results) - skipped}/{ran} experiments passed"
          f"{f' ({skipped} skipped)' if skipped else ''} in {time.perf_counter() - t0:.1f}s")  # fmt: skip
    return 0 if all(r.passed for r in results) else 1


def cmd_run(args) -> int:
    name, config = experiments.load_config(args.config, args.setting)
    outdir, results_dir = _check_outdir(args.out or Path(args.config).stem)
    res, _ = _run_one(name, config, args.setting, outdir, results_dir, not args.no_progress)
    _rebuild_table(outdir, results_dir)
    print(_summary([res]))
    return 0 if res.passed else 1


def cmd_bounds(args) -> int:
    from . import bounds
    from .bounds.closed_form import check_dimension
    from .levels import Levels

    levels = Levels.parse(args.levels)
    dims = [check_dimension(d) for d in args.d]
    print(f"levels: {levels}  (bounds for the transmitted float32 norm, THEORY §1)")
    print(f"{'d':>10}  {'tight':>12}  {'simple':>12}" + ("  {:>12}".format("qsgd") if levels.uniform_s else ""))
    for d in dims:
        row = f"{d:>10}  {bounds.tight_variance_bound(levels, d).value:>12.6g}  {bounds.simple_bound(levels, d):>12.6g}"
        if levels.uniform_s:
            row += f"  {bounds.qsgd_bound(levels.uniform_s, d):>12.6g}"
        print(row)
    return 0


def cmd_solve(args) -> int:
    from .solvers.runspec import load_run

    run = load_run(args.run)
    if args.out:
        _check_outfile(args.out)
    if args.mpi:
        return _solve_mpi(run, args)
    from .experiments.base import Progress
    from .solvers import solve

    cfg = run.make_config()
    bar = Progress("solve", cfg.T, enabled=not args.no_progress)
    res = solve(run.make_problem(), cfg, progress=lambda t: bar.step())
    bar.close()
    _report_solve(res, args.out)
    return 0 if res.status == "ok" else 1


def cmd_analyze(args) -> int:
    from .experiments.analyze import analyze

    outdir = Path(args.out)
    _writable(outdir, f"--out {args.out!r} is not a writable folder")
    types = args.types
    result = analyze(args.grads, bits=args.bits, types=None if types == "none" else types, K=args.K, gbps=args.gbps,
                     codes=args.codes, seed=args.seed, progress=not args.no_progress)  # fmt: skip
    paths = result.save(outdir)
    for budget in result.meta["bits"]:
        best = result.best(0, budget, "gamma")
        per = result.best(0, budget, "gamma", "mean_layer_rel")
        if best is not None:
            print(f"{budget:g} bits/coord (Elias-γ): least variance {best['scheme']} ({best['variance']:.4g}); "
                  f"least mean per-layer error {per['scheme']} ({per['mean_layer_rel']:.4g})")  # fmt: skip
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _solve_mpi(run, args) -> int:
    from .solvers import SolverError
    from .solvers.mpi import abort, solve_mpi

    try:
        from mpi4py import MPI
    except ImportError:
        raise UserError("--mpi needs mpi4py: pip install 'qodasim[mpi]'") from None
    comm = MPI.COMM_WORLD
    try:  # K defaults to the number of ranks
        cfg = run.make_config() if "K" in run["solver"] else run.make_config(K=comm.size)
        res = solve_mpi(run.make_problem(), cfg, comm=comm, timeout=args.timeout, crc=args.crc)
    except (SolverError, ValueError) as exc:
        if comm.size == 1:
            raise
        abort(comm, "error: " + " ".join(str(exc).split()), code=2)
    if comm.rank == 0:
        _report_solve(res, args.out, f", {comm.size} MPI ranks, {res.wire_bytes} bytes received per rank")
    return 0 if res.status == "ok" else 1


def _report_solve(res, out, extra: str = "") -> None:
    import numpy as np

    name = "gap_avg" if "gap_avg" in res.measures else next(iter(res.measures))
    gap = res.measures[name]
    final = f"{np.nanmean(gap[:, -1]):.6g}" if gap.size else "n/a"
    bits = res.bits_per_iteration.sum(axis=1).mean()
    print(f"{res.config['method']}: {res.status}, {name} {final}, {bits:.6g} bits, "
          f"{res.wall_time:.2f} s{extra}")  # fmt: skip
    if res.message:
        print(res.message)
    if out:
        print(f"wrote {res.save(out)}")


def cmd_sweep(args) -> int:
    from .solvers.sweep import run_sweep

    rows = run_sweep(args.sweep, args.out, pool=args.pool, workers=args.workers)
    bad = [r for r in rows if r["status"] != "ok"]
    print(f"{len(rows)} points, {len(bad)} not ok; summary in {Path(args.out) / 'summary.json'}")
    return 0 if not bad else 1


def cmd_speedup(args) -> int:
    from .experiments import speedup as sp
    from .netlab.model import COLLECTIVES, PAPER_SPEEDUP, Workload

    enc, dec, red = args.encode_ns * 1e-9, args.decode_ns * 1e-9, 0.0
    if args.measure_codec:
        codec = sp.measure_codec()
        enc, dec, red = codec["encode"], codec["decode"], codec["reduce"]
        print(f"codec on this machine: encode {enc * 1e9:.2f} ns/coord, decode {dec * 1e9:.2f} ns/coord, add into the "
              f"sum {red * 1e9:.2f} ns/coord (best of "
              f"{codec['repeats']}; median {codec['spread'] * 100:.0f}% above the best"
              f"{': noisy, the machine is busy' if codec['noisy'] else ''})")  # fmt: skip
    requant = args.requant_bits_per_coord
    work = Workload(args.d, args.compute, args.scaling, args.bits_per_coord, enc, dec, requant_bits_per_coord=requant,
                    reduce_per_coord=red)  # fmt: skip
    colls = COLLECTIVES if args.collective == "both" else (args.collective,)
    print(f"speed-up over uncompressed QODA (float32 all-reduce; THEORY §8): d = {args.d:g}, compute "
          f"{args.compute:g} s at K = 1 ({args.scaling} scaling), {args.bits_per_coord:g} bits/coord"
          f"{'' if requant is None else f' (SRA re-quantized chunks {requant:g})'}, latency {args.latency:g} s, "
          f"codec {enc * 1e9:g} / {dec * 1e9:g} ns/coord")  # fmt: skip
    print(f"{'method':>8} {'by':>10} {'Gbps':>6} " + " ".join(f"{'K=' + str(k):>8}" for k in args.K))
    tables = {c: sp.speedup_table(work, args.K, args.bandwidth, args.latency, c) for c in colls}
    for m in ("qoda", "qgenx"):
        for c in colls:
            for bw in args.bandwidth:
                row = " ".join(f"{x:>8.2f}" for x in tables[c][m][sp.bw_key(bw)])
                print(f"{m:>8} {sp.COLLECTIVE_NAMES[c]:>10} {bw:>6g} {row}")
        paper = PAPER_SPEEDUP[m]
        print(f"{'paper':>8} {'':>10} {'':>6} " + " ".join(f"{paper.get(k, float('nan')):>8.2f}" for k in args.K))
    for c in colls:
        holds, why = sp.pattern(tables[c], args.K, args.bandwidth)
        print(f"paper's pattern by {sp.COLLECTIVE_NAMES[c]} (growth with K, larger at low bandwidth): "
              f"{'reproduced' if holds else 'not reproduced'} ({why})")  # fmt: skip
    if args.plot:
        from .experiments.base import Result

        free = Workload(args.d, args.compute, args.scaling, args.bits_per_coord, requant_bits_per_coord=requant)
        data = {"tables": {"gpu_codec": {c: sp.speedup_table(free, args.K, args.bandwidth, args.latency, c)
                                         for c in COLLECTIVES},
                           "cpu_codec": {c: tables.get(c) or sp.speedup_table(work, args.K, args.bandwidth,
                                                                              args.latency, c) for c in COLLECTIVES}},
                "model_size": {"d": args.d, "sra_stage1": args.bits_per_coord, "allgather": args.bits_per_coord,
                               "sra_stage2": work.requant_bits},
                "Ks": args.K, "bandwidths": args.bandwidth,
                "paper": {m: {str(k): v for k, v in t.items()} for m, t in PAPER_SPEEDUP.items()}}  # fmt: skip
        for path in sp.plot(Result("speedup", {}, data, [], {}), Path(args.plot)):
            print(f"wrote {path}")
    return 0


def cmd_netlab(args) -> int:
    from . import netlab

    if args.action == "down":
        gone = netlab.down_all(args.tag)
        print(f"removed {len(gone)} namespaces" + (f": {', '.join(gone)}" if gone else ""))
        return 0
    if args.action == "list":
        print("\n".join(netlab.labs()) or "no labs")
        return 0
    if args.K < 2 or args.K > 64:
        raise UserError(f"--K must lie in [2, 64], got {args.K}")
    if args.action == "run" and not args.command:
        raise UserError("netlab run needs a command after --, e.g. `qodasim netlab run --K 2 -- python my.py`")
    lab = netlab.Lab(args.K, args.rate, persistent=args.action == "up")
    if args.action == "up":
        lab.up()
        print(f"lab {lab.tag}: {args.K} nodes at {args.rate:g} Gbit/s each way")
        for ns, addr in zip(lab.namespaces, lab.addresses):
            print(f"  {ns}  {addr}   (ip netns exec {ns} CMD)")
        print(f"remove it with: qodasim netlab down --tag {lab.tag}")
        return 0
    import signal

    def _exit(signum, frame):  # SIGTERM / SIGHUP: leave through the `with`, which removes the lab
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)
    # Ctrl-C tears the lab down even when SIGINT came in ignored (a background job, `nohup`)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with lab:
        print(f"lab {lab.tag}: {args.K} nodes at {args.rate:g} Gbit/s each way ({', '.join(lab.addresses)})",
              flush=True)  # fmt: skip
        if args.action == "check":
            gbps = lab.bandwidth()
            rtt = lab.ping_pong(sizes=(1,), repeats=50)[0]
            worst = max(abs(g / (args.rate * netlab.GOODPUT) - 1) for g in gbps)
            print("goodput into each node (all links busy): " + ", ".join(f"{g:.3f}" for g in gbps) + " Gbit/s "
                  f"(expected {args.rate * netlab.GOODPUT:.3f}: the rate less TCP/IP headers; worst "
                  f"{worst * 100:.1f}% off)")  # fmt: skip
            print(f"1-byte round trip: best {rtt['best'] * 1e6:.0f} µs, median {rtt['median'] * 1e6:.0f} µs")
            return 0 if worst <= 0.1 else 1
        codes = lab.run(args.command)
        return max(codes)


def _dimension(text: str) -> int:
    try:
        d = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if d < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return d


def _number(text: str, strict: bool) -> float:
    """A finite float ``> 0`` (``strict``) or ``>= 0`` from a command-line argument."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not ((x > 0 if strict else x >= 0) and x < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number {'>' if strict else '>='} 0: {text!r}")
    return x


def _seconds(text: str) -> float:
    return _number(text, strict=True)


def _nonneg(text: str) -> float:
    return _number(text, strict=False)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's own convention, without the usage block)
        self.exit(2, f"{self.prog}: error: {message}\n")


_EXAMPLES = """\
examples:
  qodasim reproduce --quick                    every experiment, quick setting (~3 min cold on 2 cores)
  qodasim reproduce --quick --only epsilon     one experiment
  qodasim run my.toml                          one config; writes ./my/ (figures, results/, results.md)
  qodasim bounds --levels uniform:4 --d 64 1024
  qodasim solve run.toml --out runs/a          one solver run, saved as runs/a.npz + runs/a.json
  mpiexec -n 4 qodasim solve run.toml --mpi    the same run on 4 MPI ranks (bit for bit)
  qodasim speedup --K 4 8 16 --bandwidth 1 10  modelled speed-up over uncompressed training
  qodasim analyze grads/*.npz --out report      schemes at equal bits on your model's gradients

threads: --threads N (or QODASIM_THREADS=N) caps the kernels' threads; results are the same at any count.
"""


def _version() -> str:
    import numba
    import numpy as np

    from . import __version__, threads

    return (f"qodasim {__version__} (numpy {np.__version__}, numba {numba.__version__}, "
            f"threading layer {threads.threading_layer()}, {threads.get_threads()} threads)")  # fmt: skip


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **{k: v for k, v in kwargs.items() if k == "help"})

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version())
        parser.exit(0)


def _threads_option() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=_dimension, metavar="N",
                        help="threads of the parallel kernels (default: QODASIM_THREADS, else every core); "
                        "results do not depend on it")  # fmt: skip
    return common


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="qodasim", description=__doc__.splitlines()[0], epilog=_EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--version", action=_VersionAction, help="print the versions and the threads, then exit")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser, metavar="COMMAND")
    common = [_threads_option()]
    no_progress = "no progress bars on stderr"

    r = sub.add_parser("reproduce", parents=common, help="run every experiment, write figures/ and a results table",
                       description="Run the experiments; write figures (PNG + PDF), results/*.json and "
                       "results.md into --out; exit 1 if a verdict fails.",
                       epilog="example: qodasim reproduce --quick --only variance epsilon")  # fmt: skip
    r.add_argument("--quick", action="store_true",
                   help="the quick settings (~3 min cold, ~2.3 min warm on 2 cores; README)")  # fmt: skip
    r.add_argument("--only", nargs="+", choices=list(experiments.REGISTRY), metavar="NAME",
                   help=f"run only these experiments ({', '.join(experiments.REGISTRY)})")  # fmt: skip
    r.add_argument("--out", default="figures", help="output folder (default: ./figures)")
    r.add_argument("--no-progress", action="store_true", help=no_progress)
    r.set_defaults(func=cmd_reproduce)

    c = sub.add_parser("run", parents=common, help="run one experiment config (a TOML file or a packaged name)",
                       description="Run one experiment config: a TOML file (experiment = NAME, [quick] and "
                       "[full] tables) or the name of a packaged config.",
                       epilog="example: qodasim run my.toml --setting full   (writes ./my/)")  # fmt: skip
    c.add_argument("config", help=f"a TOML file, or a packaged config: {', '.join(experiments.REGISTRY)}")
    c.add_argument("--setting", default="quick", choices=["quick", "full"], help="which table of the config (quick)")
    c.add_argument("--out", help="output folder (default: a folder named after the config in the working "
                   "directory, e.g. ./my for my.toml)")  # fmt: skip
    c.add_argument("--no-progress", action="store_true", help=no_progress)
    c.set_defaults(func=cmd_run)

    b = sub.add_parser("bounds", parents=common, help="print variance bounds for given levels and dimensions",
                       epilog="example: qodasim bounds --levels exponential:3:0.5 --d 64 4096")  # fmt: skip
    b.add_argument("--levels", required=True, help='e.g. "uniform:4", "exponential:3:0.5", "array:0,0.3,1"')
    b.add_argument("--d", type=_dimension, nargs="+", default=[16, 256, 4096, 65536], metavar="D",
                   help="dimensions (default: 16 256 4096 65536)")  # fmt: skip
    b.set_defaults(func=cmd_bounds)

    s = sub.add_parser("solve", parents=common,
                       help="one solver run from a run file; with --mpi one rank per worker (mpiexec)",
                       epilog="example: qodasim solve run.toml --out runs/a   (see docs: run files)")  # fmt: skip
    s.add_argument("run", help="a TOML run file ([problem] and [solver] tables)")
    s.add_argument("--mpi", action="store_true", help="run as worker <rank> of mpiexec's ranks (K = ranks)")
    s.add_argument("--timeout", type=_seconds, default=30.0, help="MPI collective deadline in seconds (default 30)")
    s.add_argument("--crc", action="store_true", help="with --mpi: a CRC-32 on every stream, checked on receipt")
    s.add_argument("--out", help="save the result to OUT.npz + OUT.json (the folder is checked first)")
    s.add_argument("--no-progress", action="store_true", help=no_progress)
    s.set_defaults(func=cmd_solve)

    u = sub.add_parser("speedup", parents=common,
                       help="modelled wall-clock speed-up of QODA / Q-GenX over uncompressed (THEORY §8)",
                       epilog="example: qodasim speedup --measure-codec --collective sra --K 4 8")  # fmt: skip
    u.add_argument("--d", type=_dimension, default=4_000_000, help="model size (default 4e6)")
    u.add_argument("--compute", type=_nonneg, default=0.1, help="seconds of one oracle at K = 1 (default 0.1)")
    u.add_argument("--scaling", choices=["strong", "weak"], default="strong",
                   help="strong: compute split over K; weak: compute per worker fixed (default strong)")  # fmt: skip
    u.add_argument(
        "--bits-per-coord",
        type=_seconds,
        default=1.0,
        help="bits per coordinate of a message at this d (default 1.0: uniform:3 at d = 4e6)",
    )
    u.add_argument(
        "--requant-bits-per-coord",
        type=_seconds,
        default=None,
        help="bits per coordinate of SRA's re-quantized chunks (default: --bits-per-coord)",
    )
    u.add_argument(
        "--collective",
        choices=["allgather", "sra", "both"],
        default="both",
        help="how compressed messages travel: ring all-gather, scatter-reduce-allgather, or both (default)",
    )
    u.add_argument("--latency", type=_nonneg, default=5e-5, help="alpha in seconds (default 5e-5)")
    u.add_argument("--bandwidth", type=_seconds, nargs="+", default=[1.0, 2.5, 5.0], help="Gbps (1 2.5 5)")
    u.add_argument("--K", type=_dimension, nargs="+", default=[4, 8, 12, 16], help="workers (4 8 12 16)")
    u.add_argument("--encode-ns", type=_nonneg, default=0.0, help="codec cost, ns per coordinate (default 0)")
    u.add_argument("--decode-ns", type=_nonneg, default=0.0, help="decode cost, ns per coordinate (default 0)")
    u.add_argument("--measure-codec", action="store_true", help="measure this machine's CPU codec instead")
    u.add_argument("--plot", help="also write speedup.png/.pdf into this folder")
    u.set_defaults(func=cmd_speedup)

    n = sub.add_parser("netlab", parents=common, help="K network namespaces on shaped links (root; Linux)",
                       description="A network lab: K nodes in network namespaces, each on its own link into a "
                       "bridge, shaped to --rate Gbit/s each way by tc's tbf. `run` makes a lab, runs COMMAND on "
                       "every node at once (QODASIM_NETLAB_RANK/SIZE/ADDRS set) and always removes it; `check` "
                       "measures each node's goodput and the round trip; `up` leaves a lab until `down`.",
                       usage="qodasim netlab {run,check,up,down,list} [--K K] [--rate GBPS] [--tag TAG] "
                       "[-- COMMAND ...]",
                       epilog="example: qodasim netlab run --K 4 --rate 1 -- python train.py")  # fmt: skip
    n.add_argument("action", choices=["run", "check", "up", "down", "list"], help="what to do")
    n.add_argument("--K", type=_dimension, default=4, help="nodes (default 4)")
    n.add_argument("--rate", type=_seconds, default=1.0, help="each link's rate in Gbit/s, each way (default 1)")
    n.add_argument("--tag", help="`down`: only this lab (default: every lab)")
    n.set_defaults(func=cmd_netlab)

    a = sub.add_parser("analyze", parents=common,
                       help="compare quantization schemes at equal bits on your model's gradients",
                       description="Exact variance, per-layer relative error and bits of every scheme (global, "
                       "bucketed and layer-wise QSGD, optimal levels, L-GreCo widths) under Elias-gamma, an entropy "
                       "code and fixed width, on gradient snapshots (.npz of named arrays, or a torch-saved dict).",
                       epilog="example: qodasim analyze grads/*.npz --bits 2 3 --types role --out report")  # fmt: skip
    a.add_argument("grads", nargs="+", metavar="GRADS", help=".npz files of named gradient arrays (or .pt with torch)")
    a.add_argument("--bits", type=_seconds, nargs="+", default=[1.0, 2.0, 3.0, 4.0], metavar="B",
                   help="budgets in bits per coordinate (default 1 2 3 4)")  # fmt: skip
    a.add_argument("--types", default="auto", metavar="auto|role|none|RULES",
                   help="layer types: auto (fitted), role (by shape), none, or rules 'conv*=0,*=1'")  # fmt: skip
    a.add_argument("--codes", nargs="+", default=["gamma", "entropy", "fixed"], choices=["gamma", "entropy", "fixed"],
                   help="codes compared (default: all three)")  # fmt: skip
    a.add_argument("--K", type=_dimension, default=16, help="workers of the network model (default 16)")
    a.add_argument("--gbps", type=_seconds, default=10.0, help="link bandwidth in Gbit/s (default 10)")
    a.add_argument("--seed", type=int, default=0, help="key seed of the encoded streams (default 0)")
    a.add_argument("--out", required=True, help="output folder: analysis.md, analysis.json, analysis.png/.pdf")
    a.add_argument("--no-progress", action="store_true", help=no_progress)
    a.set_defaults(func=cmd_analyze)

    w = sub.add_parser("sweep", parents=common, help="run a parameter sweep (restartable) in a process pool",
                       epilog="example: qodasim sweep sweep.toml --out runs --pool process --workers 2")  # fmt: skip
    w.add_argument("sweep", help="a TOML sweep file: a run file plus a [sweep] table of lists")
    w.add_argument("--out", required=True, help="output folder (finished points there are skipped)")
    w.add_argument("--pool", choices=["mpi", "process"], default="mpi", help="mpi4py.futures (default) or processes")
    w.add_argument("--workers", type=_dimension, help="pool size (default: what the pool picks)")
    w.set_defaults(func=cmd_sweep)
    return p


def _apply_threads(args) -> None:
    from . import threads

    threads.apply_env(strict=True)
    if getattr(args, "threads", None) is not None:
        threads.set_threads(args.threads)


def _split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """``netlab … -- COMMAND``: the options before ``--`` and the command after it."""
    if "netlab" in argv and "--" in argv and argv.index("netlab") < argv.index("--"):
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def main(argv=None) -> int:
    argv, command = _split_command(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    args.command = command
    try:
        _apply_threads(args)
        return args.func(args)
    except BrokenPipeError:  # e.g. `qodasim bounds ... | head` (an OSError: caught first)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as exc:  # user input: configs, levels, dimensions, paths; full disks
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"qodasim: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qodasim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
