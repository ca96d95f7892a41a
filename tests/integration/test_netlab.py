"""The network lab (qodasim.netlab): per-node shaped links, and nothing left behind — after an
exception, Ctrl-C, SIGTERM, SIGHUP, or a SIGKILL swept by the next lab.  Needs root, iproute2 and a
kernel with namespaces and tbf: skipped (with the reason) elsewhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from qodasim import netlab
from qodasim.cli import main
from qodasim.netlab import GOODPUT, Lab, NetlabError, NetlabUnavailable

REASON = netlab.unavailable()
needs_lab = pytest.mark.skipif(REASON is not None, reason=f"no network lab here: {REASON}")


def _namespaces_of(pid: int) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{netlab.PREFIX}{pid}x")]


def _sleepers(marker: str) -> list[str]:
    """The processes whose whole command line is ``sleep MARKER`` (not ``qodasim netlab run -- sleep
    MARKER`` itself, nor an ``ip netns exec … sleep MARKER`` that has not yet become the command)."""
    return subprocess.run(["pgrep", "-f", f"^sleep {marker}$"], capture_output=True, text=True).stdout.split()


def _ignore_int_and_hup() -> None:  # as a background job under `nohup` starts: the lab must still go
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _start_lab_run(marker: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "qodasim", "netlab", "run", "--K", "2", "--", "sleep", marker],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ignore_int_and_hup)  # fmt: skip
    deadline = time.monotonic() + 60
    while len(_sleepers(marker)) < 2:  # the lab is up and both nodes run the command
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the lab did not come up"
        time.sleep(0.1)
    assert len(_namespaces_of(proc.pid)) == 3
    return proc


# ------------------------------------------------------------------------------ without a lab
def test_bad_arguments_are_clear_errors():
    for call, err, match in [
        (lambda: Lab(1), ValueError, "K must lie in"),
        (lambda: Lab(2.0), TypeError, "K must be an integer"),
        (lambda: Lab(2, 0.0), ValueError, "rate_gbit"),
        (lambda: Lab(2, "fast"), TypeError, "rate_gbit"),
        (lambda: Lab(2).bandwidth(), NetlabError, "not up"),
        (lambda: Lab(2).ping_pong(), NetlabError, "not up"),
    ]:
        with pytest.raises(err, match=match):
            call()


@pytest.mark.parametrize(
    "argv", [["netlab", "run", "--K", "2"], ["netlab", "check", "--K", "1"], ["netlab", "up", "--rate", "0"]]
)
def test_cli_errors_are_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qodasim") and len(err.splitlines()) == 1


def test_without_root_the_lab_says_why(monkeypatch):
    monkeypatch.setattr(netlab, "_unavailable_cache", [])
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "root" in netlab.unavailable()
    with pytest.raises(NetlabUnavailable, match="root"):
        Lab(2).up()


def test_link_fit_and_model_by_hand():
    from qodasim.netlab.clock import fit_link, modelled_seconds
    from qodasim.netlab.model import Network, allgather_time, allreduce_time, sra_time

    alpha, beta = 40e-6, 0.95e9
    # one way = α + 8·bytes/β, except that the shaper's bucket passes the first 128 KiB at once
    rts = [
        {"bytes": b, "best": 2 * (alpha + 8 * max(b - (128 << 10), 0) / beta)} for b in (1, 1 << 18, 1 << 20, 1 << 22)
    ]
    rts[0]["best"] = 2 * alpha
    a, b = fit_link(rts)
    assert a == pytest.approx(alpha) and 0.8 * beta < b < 1.2 * beta
    exact = [{"bytes": n, "best": 2 * (alpha + 8 * n / beta)} for n in (1, 1 << 18, 1 << 20)]
    assert fit_link(exact)[1] == pytest.approx(beta, rel=1e-3)
    net = Network(beta, alpha)
    m = modelled_seconds("allreduce", 4, 1000, alpha, beta, 0.4, 0.0, None, 0.01)
    assert m["comm"] == pytest.approx(allreduce_time(1000, 4, net)) and m["total"] == pytest.approx(0.11 + m["comm"])
    m = modelled_seconds("allgather", 4, 1000, alpha, beta, 0.4, 0.02, [992], 0.0)
    assert m["comm"] == pytest.approx(allgather_time([8000] * 4, net))
    m = modelled_seconds("sra", 2, 1000, alpha, beta, 0.0, 0.0, [100, 200], 0.0)
    assert m["comm"] == pytest.approx(sra_time([[864, 864], [864, 864]], [1664, 1664], net))


def test_ring_fit_takes_the_slowest_rank_and_the_slope():
    """``fit_ring``: per size the slowest rank's best ring step, β from the slope (the intercept takes
    the latency and the shaper's burst); a faster rank does not raise β."""
    from qodasim.netlab.clock import RING_SIZES, fit_ring

    beta, slow_beta, lat = 4.8e9, 3.1e9, 2e-4

    def rank(b):
        return [{"bytes": n, "best": lat + 8 * n / b} for n in RING_SIZES]

    assert fit_ring([rank(beta)] * 3) == pytest.approx(beta, rel=1e-9)
    assert fit_ring([rank(beta), rank(slow_beta), rank(beta)]) == pytest.approx(slow_beta, rel=1e-9)
    assert fit_ring([rank(beta), rank(20 * beta)]) == pytest.approx(beta, rel=1e-9)
    with pytest.raises(ValueError, match="two message sizes"):
        fit_ring([[{"bytes": 1 << 20, "best": 1.0}]])
    with pytest.raises(ValueError, match="do not grow"):
        fit_ring([[{"bytes": 1 << 18, "best": 2.0}, {"bytes": 1 << 20, "best": 1.0}]])


def test_codec_on_the_critical_path_is_the_sum_of_the_step_maxima():
    """``codec_path``: Σ over phases of the slowest rank's phase, averaged over iterations; with the
    ranks' slow phases at different steps it exceeds every rank's own total (the waiting)."""
    from qodasim.netlab.clock import codec_path

    # 2 ranks, 2 iterations, 3 phases: rank 0 slow in phase 0, rank 1 slow in phase 2
    P = [[[3.0, 1.0, 1.0], [3.0, 1.0, 1.0]], [[1.0, 1.0, 3.0], [1.0, 2.0, 3.0]]]
    assert codec_path(P) == pytest.approx(((3 + 1 + 3) + (3 + 2 + 3)) / 2)
    assert codec_path(P) > max(sum(r[0]) for r in P)  # waiting: the path is longer than any rank's work
    assert codec_path([[[1.0, 2.0]]] * 3) == pytest.approx(3.0)  # equal ranks: no waiting
    with pytest.raises(ValueError, match="phases"):
        codec_path([[[1.0, 2.0]], [[1.0]]])


# ------------------------------------------------------------------------------ with a lab
@needs_lab
@pytest.mark.integration
def test_every_node_has_its_own_link_at_the_set_rate():
    """Three nodes each receive from a neighbour at once: each gets the full rate less TCP/IP headers
    (within 10%; a lab that shaped one shared link would give each a third)."""
    with Lab(3, 1.0) as lab:
        gbps = lab.bandwidth(nbytes=48 << 20)
        rtt = lab.ping_pong(sizes=(1,), repeats=20)[0]
    for g in gbps:
        assert abs(g / (1.0 * GOODPUT) - 1) < 0.1 and abs(g / 1.0 - 1) < 0.1, gbps
    assert 0 < rtt["best"] <= rtt["median"] < 0.01
    assert not _namespaces_of(os.getpid())


@needs_lab
@pytest.mark.integration
def test_both_directions_of_a_link_are_shaped():
    """Two nodes sending into one share its download; one node sending to two shares its upload."""
    with Lab(3, 0.5) as lab:
        fan_in = lab.transfer([(1, 0), (2, 0)], nbytes=24 << 20, total=True)
        fan_out = lab.transfer([(0, 1), (0, 2)], nbytes=24 << 20, total=True)
    for gbps in (fan_in, fan_out):
        assert abs(gbps / (0.5 * GOODPUT) - 1) < 0.1, (fan_in, fan_out)


@needs_lab
@pytest.mark.integration
def test_an_exception_inside_removes_the_lab_and_its_processes():
    marker = "61.101"
    with pytest.raises(RuntimeError, match="boom"):
        with Lab(2, 1.0) as lab:
            procs = [lab.popen(k, ["sleep", marker]) for k in range(2)]
            assert len(_namespaces_of(os.getpid())) == 3
            raise RuntimeError("boom")
    assert not _namespaces_of(os.getpid())
    assert all(p.wait(timeout=10) is not None for p in procs) and not _sleepers(marker)


@needs_lab
@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_netlab_run_stopped_midway_leaves_nothing(sig):
    marker = f"61.2{int(sig)}"
    proc = _start_lab_run(marker)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert not _namespaces_of(proc.pid), "namespaces left behind"
    assert not _sleepers(marker), "processes left behind"


@needs_lab
@pytest.mark.integration
def test_a_lab_whose_owner_was_killed_is_swept():
    marker = "61.399"
    proc = _start_lab_run(marker)
    proc.kill()  # SIGKILL: no cleanup can run
    proc.wait(timeout=30)
    left = _namespaces_of(proc.pid)
    assert len(left) == 3 and len(_sleepers(marker)) == 2
    assert set(left) <= set(netlab.sweep_stale())
    assert not _namespaces_of(proc.pid) and not _sleepers(marker)


@needs_lab
@pytest.mark.integration
def test_cli_up_list_down():
    out = subprocess.run([sys.executable, "-m", "qodasim", "netlab", "up", "--K", "2"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    tag = out.split()[1].rstrip(":")
    assert tag in netlab.labs()
    netlab.sweep_stale()  # a lab made by `up` belongs to no process: never swept
    assert tag in netlab.labs()
    subprocess.run([sys.executable, "-m", "qodasim", "netlab", "down", "--tag", tag], check=True, capture_output=True)
    assert tag not in netlab.labs()


@needs_lab
@pytest.mark.integration
def test_the_lab_example_of_the_docs_runs(capsys):
    from test_docs import _python_blocks

    blocks = [b for b in _python_blocks("distributed.md") if "from qodasim.netlab import Lab" in b]
    assert len(blocks) == 1
    exec(compile(blocks[0], "docs/distributed.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and not _namespaces_of(os.getpid())


@needs_lab
@pytest.mark.integration
def test_the_lab_transport_gives_the_simulations_aggregates_bit_for_bit():
    """Three ranks over TCP in a lab: the all-reduce's sum, QODA's all-gather mean and SRA's two-stage
    aggregate are the same on every rank and equal the in-process computation (same keys, same order)."""
    import hashlib

    import numpy as np

    from qodasim import Key, LayerwiseQuantizer, Levels
    from qodasim.netlab.clock import _vector, measure
    from qodasim.solvers.sra import sra_aggregate

    K, d, seed = 3, 30_000, 4
    res = measure(K=K, rate_gbit=1.0, d=d, iterations=2, warmup=1, seed=seed)
    V = np.stack([_vector(d, seed, k)[0] for k in range(K)])
    layout = _vector(d, seed, 0)[1]
    quant = LayerwiseQuantizer(layout, (Levels.uniform(3), Levels.uniform(3)))
    it = res["modes"]["sra"]["last_round"]
    total = np.zeros(d)
    for k in range(K):
        total += quant.quantize(V[k], Key(seed, k, it)).dequantize(np.float64)
    want = {"allgather": total / K, "sra": sra_aggregate(V, quant, seed, it).aggregate}
    last = res["modes"]["qgenx-sra"]["last_round"]  # Q-GenX: two rounds of keys per iteration
    assert last == 2 * it + 1
    want["qgenx-sra"] = sra_aggregate(V, quant, seed, last).aggregate
    for mode, agg in want.items():
        assert res["modes"][mode]["last"] == [hashlib.sha256(agg.tobytes()).hexdigest()] * K, mode
    sums = res["modes"]["allreduce"]["last_sum"]
    assert len(set(res["modes"]["allreduce"]["last"])) == 1
    assert sums[0] == pytest.approx(float(V.astype(np.float64).sum()), rel=1e-5, abs=1e-2)
    for mode in ("allreduce", "allgather", "sra", "qgenx-allgather", "qgenx-sra"):
        m = res["modes"][mode]
        assert m["measured"] > 0 and m["modelled"] > 0 and m["comm"] >= 0
    assert res["beta"] > 0 and res["alpha"] > 0
    # β of a ring step of all ranks at once: at most the link's (one pair's, by ping-pong) plus noise
    assert 0.3 * res["beta_pingpong"] < res["beta"] < 1.1 * res["beta_pingpong"]
    assert len(res["ring"]) == K and all(len(r) == 3 for r in res["ring"])
