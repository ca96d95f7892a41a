"""Real workers over MPI: ``mpiexec -n 4`` against the in-process simulation, the bytes on the
wire against the ledger, faults that end the job, and restartable sweeps.

The ``mpi`` extra (mpi4py + the MPICH wheel, which brings ``mpiexec``) is part of ``dev``, so CI runs all
of this; without it the tests skip with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration  # mpiexec jobs: their own invocation (README, .ci/run)

REQUIRED = os.environ.get("QODASIM_REQUIRE_MPI") == "1"  # CI: these tests must run, not skip
try:
    import mpi4py  # noqa: F401
except ImportError:
    if REQUIRED:
        raise
    pytest.skip("mpi4py not installed (pip install 'qodasim[mpi]')", allow_module_level=True)
BIN = Path(sys.executable).parent
MPIEXEC = shutil.which("mpiexec", path=str(BIN)) or shutil.which("mpiexec")
if MPIEXEC is None:
    if REQUIRED:
        raise RuntimeError("QODASIM_REQUIRE_MPI=1 but mpiexec was not found")
    pytest.skip("mpiexec not found (pip install 'qodasim[mpi]')", allow_module_level=True)
WORKER = Path(__file__).resolve().parents[1] / "mpi" / "worker.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def mpirun(n: int, *args, timeout: float = 300, extra=()) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run([MPIEXEC, *extra, "-n", str(n), sys.executable, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=ENV)  # fmt: skip
    return proc, time.monotonic() - t0


@pytest.fixture(scope="module")
def equal_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi") / "equal.json"
    proc, _ = mpirun(4, WORKER, "equal", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["name"]: r for r in json.loads(out.read_text())}


def test_mpiexec_4_ranks_equal_the_simulation_bit_for_bit(equal_report):
    """Eleven configs (QODA, Q-GenX, Popov, EG, GDA; global and layer-wise with two types; γ, δ, ω; dense
    and sparse; replicas; re-optimized levels; the L-GreCo and DQ level policies; per-worker steps;
    finite-sum noise; buckets; scatter-reduce-allgather; a diverging run): every iterate, measure, bit
    count and ledger row equals the in-process run."""
    assert len(equal_report) == 11
    for name, r in equal_report.items():
        assert r["status"][0] == r["status"][1], name
        assert r["message"][0] == r["message"][1], name
        for key in ("x_last", "x_avg", "measures", "bits", "ledger"):
            assert r[key], (name, key)
    assert equal_report["qoda-diverges"]["status"][0] == "diverged"


def test_bytes_on_the_wire_equal_the_ledger(equal_report):
    """One replica: the bytes every rank received are the ledger's messages, each rounded up to a byte.
    Replicas: proportional (the ledger records replica 0).  Uncompressed: float64 values, 2x the
    ledger's float32 count."""
    for name, r in equal_report.items():
        if r["replicas"] == 1 and r["compressed"] and "sra" not in name:  # one message per row
            assert r["wire_bytes"] == r["ledger_bytes"], name
    # (SRA rows hold a worker's K − 1 chunks and its re-quantized chunk, several messages each: their
    # streams are checked bit for bit in the test above)
    r = equal_report["popov-uncompressed-perworker-R3"]
    assert r["wire_bytes"] == 3 * 2 * r["ledger_bytes"]


def test_a_killed_rank_ends_the_job_within_30_s():
    proc, dt = mpirun(4, WORKER, "kill", "-", timeout=60)
    assert proc.returncode != 0
    assert dt < 30, dt
    out = proc.stdout + proc.stderr
    assert "signal 9" in out or "Killed" in out or "KILLED" in out, out[-2000:]


def test_a_hung_rank_ends_the_job_with_a_message_on_every_other_rank():
    """Rank 1 never reaches the collective: ranks 0, 2, 3 each print the timeout line, then Abort."""
    proc, dt = mpirun(4, WORKER, "hang", "-", timeout=60)
    assert proc.returncode != 0
    assert dt < 30, dt
    for rank in (0, 2, 3):
        assert f"qodasim[rank {rank}/4]: no answer from the other workers within 5 s" in proc.stderr, proc.stderr


def test_a_stream_that_does_not_decode_ends_the_job_with_a_message_on_every_rank():
    proc, dt = mpirun(4, WORKER, "corrupt", "-", timeout=60)
    assert proc.returncode != 0
    assert dt < 30
    for rank in range(4):
        line = f"qodasim[rank {rank}/4]: error: the message of worker 1 (replica 0) in iteration 4 (round 3) does not"
        assert line in proc.stderr, proc.stderr


def test_a_flipped_bit_goes_unnoticed_without_crc_and_ends_the_job_with_it(tmp_path):
    """A payload bit flipped on the wire still decodes (a wrong iterate, silently) unless the streams
    carry a CRC: with ``crc=True`` every rank names the worker and round, and the job ends."""
    out = tmp_path / "flip.json"
    proc, _ = mpirun(4, WORKER, "flip", out, timeout=120)
    assert proc.returncode == 0 and json.loads(out.read_text())["status"] == "ok", proc.stderr[-2000:]
    env = {**ENV, "QODASIM_TEST_CRC": "1"}
    t0 = time.monotonic()
    proc = subprocess.run([MPIEXEC, "-n", "4", sys.executable, str(WORKER), "flip", "-"], capture_output=True,
                          text=True, timeout=120, env=env)  # fmt: skip
    assert proc.returncode != 0 and time.monotonic() - t0 < 60
    for rank in range(4):
        line = f"qodasim[rank {rank}/4]: error: the message of worker 1 (replica 0) in iteration 4 (round 3) does not"
        assert line in proc.stderr, proc.stderr
    assert "CRC" in proc.stderr and "Traceback" not in proc.stderr


RUN = """
[problem]
name = "bilinear_game"
n = 5
seed = 1
[solver]
method = "qoda"
T = 80
compression = "layerwise"
levels = "uniform:5"
noise = { kind = "absolute", sigma = 1.0 }
seed = 2
"""


def test_cli_solve_under_mpiexec_equals_the_in_process_cli(tmp_path):
    """Launched as on a cluster, with a hostfile (here one host, ``localhost:2``)."""
    run = tmp_path / "run.toml"
    run.write_text(RUN)
    hosts = tmp_path / "hosts"
    hosts.write_text("localhost:2\n")
    proc, _ = mpirun(2, "-m", "qodasim", "solve", run, "--mpi", "--out", tmp_path / "mpi", extra=("-f", str(hosts)))
    assert proc.returncode == 0, proc.stderr
    assert "2 MPI ranks" in proc.stdout
    run.write_text(RUN.replace("seed = 2", "seed = 2\nK = 2"))
    subprocess.run([sys.executable, "-m", "qodasim", "solve", run, "--out", tmp_path / "sim"], check=True,
                   capture_output=True, env=ENV)  # fmt: skip
    from qodasim.solvers import SolverResult

    a, b = SolverResult.load(tmp_path / "mpi"), SolverResult.load(tmp_path / "sim")
    assert np.array_equal(a.measures["gap_avg"], b.measures["gap_avg"])
    assert np.array_equal(a.bits_per_iteration, b.bits_per_iteration)


def test_cli_solve_mpi_with_a_wrong_K_is_a_one_line_error_on_every_rank(tmp_path):
    run = tmp_path / "run.toml"
    run.write_text(RUN.replace("seed = 2", "seed = 2\nK = 3"))
    proc, dt = mpirun(2, "-m", "qodasim", "solve", run, "--mpi", timeout=60)
    assert proc.returncode != 0 and dt < 30
    for rank in (0, 1):
        assert f"qodasim[rank {rank}/2]: error: K = 3 but the communicator has 2 ranks" in proc.stderr


@pytest.mark.parametrize("change,what", [("sigma = 1.0", "configuration"), ("seed = 1\n[solver]", "problem")])
def test_ranks_started_with_different_runs_stop_before_the_first_step(tmp_path, change, what):
    """``mpiexec -n 1 … solve a.toml --mpi : -n 1 … solve b.toml --mpi`` with files that differ in the
    noise level (or the problem's seed): every rank says so in one line and the job fails — it used to
    finish with a wrong gap.  Nothing is printed after the message (no traceback)."""
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(RUN)
    new = "sigma = 5.0" if what == "configuration" else "seed = 7\n[solver]"
    b.write_text(RUN.replace(change, new, 1))
    assert a.read_text() != b.read_text()
    cmd = [MPIEXEC, "-n", "1", sys.executable, "-m", "qodasim", "solve", str(a), "--mpi", ":",
           "-n", "1", sys.executable, "-m", "qodasim", "solve", str(b), "--mpi"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode != 0
    for rank in (0, 1):
        assert f"qodasim[rank {rank}/2]: error: rank(s) [1] were started with another {what} than rank 0" in (
            proc.stderr), proc.stderr  # fmt: skip
    assert "Traceback" not in proc.stderr and "gap" not in proc.stdout


def test_cli_solve_mpi_with_crc_equals_the_run_without(tmp_path):
    """``--crc``: the same iterates; every message 32 header bits longer in the ledger (the CRC field; the
    flag saying whether there is one is always sent)."""
    run = tmp_path / "run.toml"
    run.write_text(RUN)
    results = {}
    for flag in ((), ("--crc",)):
        out = tmp_path / ("crc" if flag else "plain")
        proc, _ = mpirun(2, "-m", "qodasim", "solve", run, "--mpi", *flag, "--out", out, timeout=120)
        assert proc.returncode == 0, proc.stderr
        from qodasim.solvers import SolverResult

        results[bool(flag)] = SolverResult.load(out)
    a, b = results[False], results[True]
    assert np.array_equal(a.measures["gap_avg"], b.measures["gap_avg"])
    extra = b.bits_per_iteration - a.bits_per_iteration
    assert np.all(extra == 2 * 32)  # two workers' messages per iteration


SWEEP = (
    RUN
    + """
[sweep]
"solver.method" = ["qoda", "qgenx"]
"solver.seed" = [0, 1, 2, 3]
"""
)


def _tagged_processes(tag: str) -> list[int]:
    """The live (not zombie) processes whose environment carries ``QODASIM_TEST_TAG=tag``: the sweep and
    everything it started, wherever in the process tree (MPI's spawned workers are in another session)."""
    out = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"QODASIM_TEST_TAG={tag}".encode() in env.read_bytes().split(b"\0"):
                if (env.parent / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(int(env.parent.name))
        except OSError:
            continue
    return out


@pytest.mark.parametrize("pool", ["process", "mpi"])
def test_a_killed_sweep_leaves_no_worker(tmp_path, pool):
    """SIGKILL to ``qodasim sweep`` alone (not its process group): its two pool workers (and, for the MPI
    pool, MPI's process manager) die with it."""
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP.replace("T = 80", "T = 100000"))
    tag = f"{os.getpid()}-{pool}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "qodasim", "sweep", str(sweep), "--out", str(tmp_path / "out"), "--pool", pool,
           "--workers", "2"]  # fmt: skip
    env = {**ENV, "QODASIM_TEST_TAG": tag}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    workers = {"process": 2, "mpi": 4}[pool]  # + mpiexec and hydra_pmi_proxy
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_tagged_processes(tag)) < 1 + workers:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    assert len(_tagged_processes(tag)) >= 1 + workers
    time.sleep(1.0)  # the workers run their first points
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _tagged_processes(tag):
        time.sleep(0.1)
    left = _tagged_processes(tag)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"pool workers outlived the sweep: {left}"


def test_a_corrupt_finished_point_runs_again(tmp_path):
    """A finished point whose JSON is corrupt runs again on the next start instead of a traceback at the end."""
    small = tmp_path / "small.toml"
    small.write_text(SWEEP.replace("[0, 1, 2, 3]", "[0]"))
    out2 = tmp_path / "out2"
    cmd2 = [sys.executable, "-m", "qodasim", "sweep", str(small), "--out", str(out2), "--pool", "process",
            "--workers", "1"]  # fmt: skip
    assert subprocess.run(cmd2, capture_output=True, text=True, timeout=300, env=ENV).returncode == 0
    victim = sorted((out2 / "runs").glob("*.json"))[0]
    victim.write_text("{")
    again = subprocess.run(cmd2, capture_output=True, text=True, timeout=300, env=ENV)
    assert again.returncode == 0, again.stderr
    assert "1 already finished, 1 run (1 of them finished before but unreadable)" in again.stdout
    assert json.loads(victim.read_text())["status"] == "ok"
    assert len(json.loads((out2 / "summary.json").read_text())) == 2


@pytest.mark.parametrize("pool", ["process", "mpi"])
def test_sweep_killed_midway_resumes_with_the_finished_points(tmp_path, pool):
    """Start a sweep of 8 points with one worker, kill the whole process group once at least two
    results exist, rerun: those results are reused (same files, untouched) and the rest finish."""
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP.replace("T = 80", "T = 400"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "qodasim", "sweep", str(sweep), "--out", str(out), "--pool", pool, "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, start_new_session=True)
    runs = out / "runs"
    deadline = time.monotonic() + 240

    def finished():  # a point's result, not the hidden temporary files a killed writer leaves behind
        return [p for p in runs.glob("*.json") if not p.name.startswith(".")]

    while time.monotonic() < deadline and len(finished()) < 2:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done = {p: p.stat().st_mtime_ns for p in finished()}
    assert 2 <= len(done) < 8
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert again.returncode == 0, again.stderr
    assert f"{len(done)} already finished, {8 - len(done)} run" in again.stdout
    for p, mtime in done.items():
        assert p.stat().st_mtime_ns == mtime
    assert len(finished()) == 8
    summary = json.loads((out / "summary.json").read_text())
    assert sorted((r["solver.method"], r["solver.seed"]) for r in summary) == sorted(
        (m, s) for m in ("qoda", "qgenx") for s in range(4)
    )
    from qodasim.solvers import SolverConfig, solve
    from qodasim.solvers.runspec import load_run

    run = load_run(sweep)
    res = solve(run.make_problem(), run.make_config(method="qgenx", seed=3))
    row = next(r for r in summary if r["solver.method"] == "qgenx" and r["solver.seed"] == 3)
    assert row["final_gap"] == float(np.mean(res.measures["gap_avg"][:, -1]))
    assert isinstance(run.make_config(), SolverConfig)


def test_the_wgan_over_two_ranks_equals_its_simulation(tmp_path):
    """A real network's operator (jax) through the same path: two ranks, each drawing its own
    minibatches, give the simulated run's measures and bits exactly (on one machine)."""
    pytest.importorskip("jax")
    run = tmp_path / "wgan.toml"
    text = ('[problem]\nname = "wgan"\nhidden = 8\n[solver]\nmethod = "qoda"\nT = 25\ncompression = "layerwise"\n'
            'levels = "uniform:5"\nnoise = { kind = "finite_sum", batch = 16 }\nrecord = 4\n')  # fmt: skip
    run.write_text(text)
    proc, _ = mpirun(2, "-m", "qodasim", "solve", run, "--mpi", "--out", tmp_path / "mpi")
    assert proc.returncode == 0, proc.stderr
    run.write_text(text.replace("T = 25", "T = 25\nK = 2"))
    subprocess.run([sys.executable, "-m", "qodasim", "solve", run, "--out", tmp_path / "sim"], check=True,
                   capture_output=True, env=ENV)  # fmt: skip
    from qodasim.solvers import SolverResult

    a, b = SolverResult.load(tmp_path / "mpi"), SolverResult.load(tmp_path / "sim")
    names = ("opnorm", "energy", "frechet", "coverage")
    assert set(a.measures) == {f"{m}_{w}" for m in names for w in ("avg", "last")}
    assert all(np.array_equal(a.measures[k], b.measures[k]) for k in a.measures)
    assert np.array_equal(a.bits_per_iteration, b.bits_per_iteration)
