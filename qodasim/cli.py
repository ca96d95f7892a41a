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


def _check_outdir(out: str) -> tuple[Path, Path]:
    """Create ``out`` and ``out/results`` and prove they are writable, before computing anything."""
    outdir = Path(out)
    results_dir = outdir / "results"
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"--out {out!r} is not a writable folder: {exc.strerror or exc}") from None
    return outdir, results_dir


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
        for v in res.verdicts:
            status = "PASS" if v.passed else "FAIL"
            lines.append(f"| {res.experiment} | {status} | {v.name} | {v.detail} |")
    return "\n".join(lines)


def _rebuild_table(outdir: Path, results_dir: Path) -> None:
    atomic_write_text(outdir / "results.md", results_table(load_results(results_dir)))


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
    print(f"\n{sum(r.passed for r in results)}/{len(results)} experiments passed in {time.perf_counter() - t0:.1f}s")
    return 0 if all(r.passed for r in results) else 1


def cmd_run(args) -> int:
    name, config = experiments.load_config(args.config, args.setting)
    outdir, results_dir = _check_outdir(args.out)
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


def _dimension(text: str) -> int:
    try:
        d = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if d < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return d


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's own convention, without the usage block)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="qodasim", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    r = sub.add_parser("reproduce", help="run every experiment, write figures/ and a results table")
    r.add_argument("--quick", action="store_true", help="small settings (a few minutes on 2 cores)")
    r.add_argument("--only", nargs="+", choices=list(experiments.REGISTRY), help="run only these experiments")
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
    b.add_argument("--d", type=_dimension, nargs="+", default=[16, 256, 4096, 65536])
    b.set_defaults(func=cmd_bounds)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # user input: configs, levels, dimensions, paths; full disks
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"qodasim: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qodasim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `qodasim bounds ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
