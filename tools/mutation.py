"""Mutation testing with cosmic-ray: which bugs would the tests miss?

    python tools/mutation.py                      # every target below (hours: not for CI)
    python tools/mutation.py optimize/allocation  # one or more targets by name
    python tools/mutation.py --list

Each target is a module and the tests that guard it (a fast subset, so a mutant costs seconds).  A
module has hundreds of mutants and a test run costs seconds, so by default a seeded random sample of
60 non-trivial mutants per target is run (``--sample 0`` for all): the score is an estimate, printed
with its binomial standard error.  The run happens in a scratch copy of the tracked files (cosmic-ray
edits files in place), and writes ``tools/mutation-results/<target>.json`` (score and every surviving
mutant: operator, line, the mutated text) plus a summary table on stdout.  The README's testing
section records the scores.  Needs cosmic-ray (the ``dev`` and ``mutation`` extras).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tools" / "mutation-results"
PYTEST = "python -m pytest -x -q -p no:cacheprovider -p no:randomly"

#: target name → (module, tests).  Numba kernels are left out: every mutant would recompile them.
TARGETS = {
    "optimize/allocation": ("qodasim/optimize/allocation.py", "tests/optimize/test_allocation.py"),
    "solvers/steps": ("qodasim/solvers/steps.py", "tests/solvers/test_methods.py"),
    "bounds/closed_form": (
        "qodasim/bounds/closed_form.py",
        "tests/bounds/test_bounds.py tests/experiments/test_cli_experiments.py::test_closed_form_bounds_values",
    ),
    "vi/measures": ("qodasim/vi/measures.py", "tests/vi/test_gaps.py"),
    "vi/gaps": ("qodasim/vi/gaps.py", "tests/vi/test_gaps.py"),
    "quantize/check": (
        "qodasim/quantize/check.py",
        "tests/quantize/test_check.py tests/quantize/test_quantize.py -k 'samples or floored or moments or checker or "
        "conformance_numba or other_checks'",
    ),  # fmt: skip
    "solvers/policies": ("qodasim/solvers/policies.py", "tests/solvers/test_policies.py"),
    "experiments/budget": ("qodasim/experiments/budget.py", "tests/experiments/test_budget.py"),
    "optimize/convex": (
        "qodasim/optimize/convex.py",
        "tests/optimize/test_level_optimizers.py tests/optimize/test_allocation.py -k 'bound_optimal or budget'",
    ),
    "coding/protocol": (
        "qodasim/coding/protocol.py",
        "tests/coding tests/test_golden.py",
    ),
    "vi/noise": (
        "qodasim/vi/noise.py",
        "tests/vi/test_normal.py tests/solvers/test_vi_solvers.py "
        "-k 'noise or normal or fill or student or replica or bad or finite'",
    ),
    "coding/ledger": (
        "qodasim/coding/ledger.py",
        "tests/coding/test_coding.py tests/netlab/test_model.py -k 'ledger'",
    ),
    "bounds/tight": (
        "qodasim/bounds/tight.py",
        "tests/bounds/test_bounds.py",
    ),
    "optimize/prune": ("qodasim/optimize/_prune.py", "tests/optimize/test_prune.py"),
    "optimize/schemes": (
        "qodasim/optimize/schemes.py",
        "tests/optimize/test_schemes.py",
    ),
    "quantize/layers": (
        "qodasim/quantize/layers.py",
        "tests/quantize/test_layers.py",
    ),
    "solvers/sra": ("qodasim/solvers/sra.py", "tests/solvers/test_sra.py -k 'not converges'"),
    "netlab/model": (
        "qodasim/netlab/model.py",
        "tests/netlab/test_model.py",
    ),
}


def _copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f)


#: Mutations *to* bitwise operators fail on floats at once (a TypeError, trivially "killed"): left out.
_TRIVIAL = ("_BitXor", "_BitOr", "_BitAnd", "_LShift", "_RShift")


def _sample(db: Path, sample: int, seed: int) -> int:
    """Keep a seeded random sample of ``sample`` non-trivial mutants in a cosmic-ray session; returns
    how many non-trivial mutants there were (the score is then an estimate over the sample)."""
    import random
    import sqlite3

    con = sqlite3.connect(db)
    rows = con.execute("SELECT job_id, operator_name FROM mutation_specs").fetchall()
    keep = [j for j, op in rows if not op.endswith(_TRIVIAL)]
    n_all = len(keep)
    if sample and len(keep) > sample:
        keep = random.Random(seed).sample(sorted(keep), sample)
    keep = set(keep)
    drop = [(j,) for j, _ in rows if j not in keep]
    con.executemany("DELETE FROM mutation_specs WHERE job_id = ?", drop)
    con.executemany("DELETE FROM work_items WHERE job_id = ?", drop)
    con.commit()
    con.close()
    return n_all


def run_target(name: str, timeout: float, sample: int = 60, seed: int = 0) -> dict:
    module, tests = TARGETS[name]
    with tempfile.TemporaryDirectory(prefix="qodasim-mutation-") as tmp:
        work = Path(tmp)
        _copy_tree(work)
        cfg = work / "cr.toml"
        cfg.write_text(
            "[cosmic-ray]\n"
            f'module-path = "{module}"\n'
            f"timeout = {timeout}\n"
            "excluded-modules = []\n"
            f'test-command = "{PYTEST} {tests}"\n'
            '[cosmic-ray.distributor]\nname = "local"\n'
        )
        env_cmd = dict(cwd=work, check=True, capture_output=True, text=True)
        subprocess.run(["cosmic-ray", "init", str(cfg), "s.sqlite"], **env_cmd)
        n_all = _sample(work / "s.sqlite", sample, seed)
        subprocess.run(["cosmic-ray", "exec", str(cfg), "s.sqlite"], **env_cmd)
        dump = subprocess.run(["cosmic-ray", "dump", "s.sqlite"], **env_cmd).stdout
        source = (work / module).read_text().splitlines()
    killed, survived, other = 0, [], 0
    for line in dump.splitlines():
        item, result = json.loads(line)
        outcome = (result or {}).get("test_outcome")
        if outcome == "killed":
            killed += 1
        elif outcome == "survived":
            mut = item["mutations"][0]
            row = mut["start_pos"][0]
            survived.append({"operator": mut["operator_name"], "occurrence": mut["occurrence"], "line": row,
                             "code": source[row - 1].strip() if 0 < row <= len(source) else ""})  # fmt: skip
        else:
            other += 1
    total = killed + len(survived)
    score = killed / total if total else float("nan")
    se = (score * (1 - score) / total) ** 0.5 if total else float("nan")
    return {"target": name, "module": module, "tests": tests, "non_trivial_mutants": n_all, "sampled": total,
            "killed": killed, "survived": len(survived), "incompetent_or_timeout": other,
            "score": round(score, 4), "score_se": round(se, 4), "seed": seed, "survivors": survived}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("targets", nargs="*", help=f"targets (default all): {', '.join(TARGETS)}")
    p.add_argument("--list", action="store_true")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant's test run")
    p.add_argument("--sample", type=int, default=60, help="mutants per target, a seeded random sample (0: all)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.list:
        for name, (module, tests) in TARGETS.items():
            print(f"{name:<22} {module:<34} {tests}")
        return 0
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        print(f"mutation: unknown target(s) {unknown}; see --list", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    print("| target | mutants (non-trivial) | sampled | killed | survived | score ± SE |\n|---|---|---|---|---|---|")
    for name in args.targets or list(TARGETS):
        res = run_target(name, args.timeout, args.sample, args.seed)
        (OUT / f"{name.replace('/', '.')}.json").write_text(json.dumps(res, indent=1) + "\n")
        print(
            f"| {name} | {res['non_trivial_mutants']} | {res['sampled']} | {res['killed']} | {res['survived']} | "
            f"{res['score']:.2f} ± {res['score_se']:.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
