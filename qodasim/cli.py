"""The ``qodasim`` command: reproduce the theory figures, run one config, print bounds."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import experiments


def _run_one(name: str, config: dict, outdir: Path, results_dir: Path, progress: bool):
    mod = experiments.get(name)
    t0 = time.perf_counter()
    result = mod.run(config, progress=progress)
    result.meta["seconds"] = round(time.perf_counter() - t0, 2)
    result.save(results_dir / f"{name}.json")
    paths = mod.plot(result, outdir)
    return result, paths


def _summary(results) -> str:
    lines = ["| experiment | verdict | check | detail |", "|---|---|---|---|"]
    for res in results:
        for v in res.verdicts:
            status = "PASS" if v.passed else "FAIL"
            lines.append(f"| {res.experiment} | {status} | {v.name} | {v.detail} |")
    return "\n".join(lines)


def cmd_reproduce(args) -> int:
    setting = "quick" if args.quick else "full"
    names = args.only or list(experiments.REGISTRY)
    outdir, results_dir = Path(args.out), Path(args.out) / "results"
    results = []
    t0 = time.perf_counter()
    for name in names:
        _, config = experiments.load_config(name, setting)
        print(f"[{name}] ({setting})", file=sys.stderr)
        res, paths = _run_one(name, config, outdir, results_dir, not args.no_progress)
        results.append(res)
        for p in paths:
            print(f"  wrote {p}", file=sys.stderr)
    table = _summary(results)
    (outdir / "results.md").write_text(f"# qodasim reproduce ({setting})\n\n{table}\n")
    print(table)
    print(f"\n{sum(r.passed for r in results)}/{len(results)} experiments passed in {time.perf_counter() - t0:.1f}s")
    return 0 if all(r.passed for r in results) else 1


def cmd_run(args) -> int:
    name, config = experiments.load_config(args.config, args.setting)
    res, paths = _run_one(name, config, Path(args.out), Path(args.out) / "results", not args.no_progress)
    print(_summary([res]))
    return 0 if res.passed else 1


def cmd_bounds(args) -> int:
    from . import bounds
    from .levels import Levels

    levels = Levels.parse(args.levels)
    print(f"levels: {levels}")
    print(f"{'d':>10}  {'tight':>12}  {'simple':>12}" + ("  {:>12}".format("qsgd") if levels.uniform_s else ""))
    for d in args.d:
        row = f"{d:>10}  {bounds.tight_variance_bound(levels, d).value:>12.6g}  {bounds.simple_bound(levels, d):>12.6g}"
        if levels.uniform_s:
            row += f"  {bounds.qsgd_bound(levels.uniform_s, d):>12.6g}"
        print(row)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qodasim", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reproduce", help="run every experiment, write figures/ and a results table")
    r.add_argument("--quick", action="store_true", help="small settings (a few minutes on 2 cores)")
    r.add_argument("--only", nargs="+", choices=sorted(experiments.REGISTRY), help="run only these experiments")
    r.add_argument("--out", default="figures", help="output folder (default: figures)")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_reproduce)
    c = sub.add_parser("run", help="run one experiment config (a TOML file or a packaged name)")
    c.add_argument("config")
    c.add_argument("--setting", default="quick", choices=["quick", "full"])
    c.add_argument("--out", default="figures")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=cmd_run)
    b = sub.add_parser("bounds", help="print variance bounds for given levels and dimensions")
    b.add_argument("--levels", required=True, help='e.g. "uniform:4", "exponential:3:0.5", "array:0,0.3,1"')
    b.add_argument("--d", type=int, nargs="+", default=[16, 256, 4096, 65536])
    b.set_defaults(func=cmd_bounds)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"qodasim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
