"""The network-time model (THEORY §8): collectives, SRA and whole iterations by hand, run times from a ledger."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim.coding import BitLedger
from qodasim.netlab.model import (
    GBPS,
    Network,
    Workload,
    allgather_time,
    allreduce_time,
    iteration_time,
    run_time,
    speedup,
    sra_time,
    traffic,
)
from qodasim.vi import bilinear_game


def test_collectives_by_hand():
    net = Network(2 * GBPS, latency=1e-4)
    # 4 workers, 1e6-bit messages: 3 steps of (0.1 ms + 0.5 ms)
    assert allgather_time([1e6] * 4, net) == pytest.approx(3 * (1e-4 + 5e-4), rel=1e-14)
    # unequal messages: every step is as long as the largest message in flight
    assert allgather_time([1e6, 4e6, 0, 2e6], net) == pytest.approx(3 * (1e-4 + 2e-3), rel=1e-14)
    # all-reduce of d = 1e6 float32 over 4 workers: 6 latencies + 2·3/4·32e6 bits / 2e9
    assert allreduce_time(10**6, 4, net) == pytest.approx(6e-4 + 1.5 * 32e6 / 2e9, rel=1e-14)
    assert allgather_time([5e6], net) == 0.0 and allreduce_time(10, 1, net) == 0.0


def test_sra_by_hand():
    net = Network(2 * GBPS, latency=1e-4)
    # 4 workers, 4e6-bit messages: chunks of 1e6 bits, re-quantized chunks of 0.5e6 bits
    t = sra_time(np.full((4, 4), 1e6), [0.5e6] * 4, net)
    assert t == pytest.approx(3 * (1e-4 + 5e-4) + 3 * (1e-4 + 2.5e-4), rel=1e-14)
    # unequal chunks: step s is set by the largest chunk sent s places on; the diagonal is never sent
    c = np.zeros((3, 3))
    c[0, 1], c[2, 0], c[1, 0] = 4e6, 2e6, 8e6  # steps: s = 1 sends c01, c12, c20; s = 2 sends c02, c10, c21
    c[np.diag_indices(3)] = 1e9
    assert sra_time(c, [0, 0, 0], net) == pytest.approx(4 * 1e-4 + (4e6 + 8e6) / 2e9, rel=1e-14)
    assert sra_time([[5.0]], [5.0], net) == 0.0
    # traffic per worker: all-gather grows with K, SRA and all-reduce do not
    assert traffic("allgather", 8, 1000, 2.0) == 7 * 2000
    assert traffic("sra", 8, 1000, 2.0, 1.0) == pytest.approx(7 / 8 * 3000)
    assert traffic("allreduce", 8, 1000, 2.0) == pytest.approx(2 * 7 / 8 * 32000)
    # THEORY §8: with b_1 = b_2 = b the speed-up ceiling of SRA is 32/b as bandwidth vanishes
    work = Workload(d=10**6, compute=0.0, bits_per_coord=2.0)
    assert speedup("qoda", 8, work, Network(1e3, 0.0), collective="sra") == pytest.approx(16.0, rel=1e-12)


def test_iteration_time_counts_messages_compute_and_codec():
    work = Workload(d=1000, compute=0.8, scaling="strong", bits_per_coord=2.0, encode_per_coord=1e-9,
                    decode_per_coord=3e-9)  # fmt: skip
    net = Network(1 * GBPS, latency=0.0)
    q = iteration_time("qoda", True, 4, work, net)
    assert q["compute"] == pytest.approx(0.2)
    assert q["codec"] == pytest.approx(1000 * (1e-9 + 3 * 3e-9))
    assert q["comm"] == pytest.approx(3 * 2000 / 1e9)
    g = iteration_time("qgenx", True, 4, work, net)
    for part in ("compute", "codec", "reduce", "comm", "total"):
        assert g[part] == pytest.approx(2 * q[part])
    u = iteration_time("qoda", False, 4, work, net)
    assert u["codec"] == 0 and u["comm"] == pytest.approx(2 * 3 / 4 * 32000 / 1e9)
    weak = Workload(1000, 0.8, "weak", 2.0)
    assert iteration_time("qoda", True, 4, weak, net)["compute"] == 0.8
    assert speedup("qoda", 4, work, net) == pytest.approx(u["total"] / q["total"])
    s = iteration_time("qoda", True, 4, work, net, "sra")  # encode d + d/4, decode 2·3/4·d
    assert s["codec"] == pytest.approx(1000 * (1.25e-9 + 1.5 * 3e-9))
    assert s["comm"] == pytest.approx(6 * 500 / 1e9)
    req = Workload(1000, 0.8, "strong", 2.0, requant_bits_per_coord=1.0)
    assert iteration_time("qoda", True, 4, req, net, "sra")["comm"] == pytest.approx(3 * (500 + 250) / 1e9)
    assert req.requant_bits == 1.0 and work.requant_bits == 2.0
    # the reduction: (K−1)·d additions by all-gather, (K−1)·d/K by SRA and by the all-reduce
    red = Workload(1000, 0.0, "strong", 2.0, reduce_per_coord=1e-9)
    assert iteration_time("qoda", True, 4, red, net)["reduce"] == pytest.approx(3000e-9)
    assert iteration_time("qoda", True, 4, red, net, "sra")["reduce"] == pytest.approx(750e-9)
    assert iteration_time("qgenx", False, 4, red, net)["reduce"] == pytest.approx(2 * 750e-9)


def test_speedup_grows_as_bandwidth_falls_when_communication_matters():
    work = Workload(d=4_000_000, compute=0.5, bits_per_coord=1.5)
    s = [speedup("qoda", 8, work, Network(bw * GBPS)) for bw in (5.0, 2.5, 1.0)]
    assert s[0] < s[1] < s[2]
    assert speedup("qgenx", 8, work, Network(GBPS)) < s[2]  # two messages against the same baseline


def test_run_time_from_a_ledger_by_hand():
    led = BitLedger()
    for rnd, sizes in enumerate(([100, 300], [200, 50], [10, 10], [0, 40])):
        for k, b in enumerate(sizes):
            led.record(k, rnd, {"payload": b})
    work = Workload(d=10, compute=1.0, scaling="weak", bits_per_coord=1.0)
    net = Network(100.0, latency=0.5)
    # rounds cost (K−1)(α + max/β) + compute: 0.5+3+1, 0.5+2+1, 0.5+0.1+1, 0.5+0.4+1 → two per iteration
    t = run_time(led, 2, 10, work, net, rounds_per_iteration=2)
    assert np.allclose(t, [4.5 + 3.5, 8.0 + 1.6 + 1.9])
    scaled = run_time(led, 2, 5, work, net)  # the model's d is twice the run's: bits double
    assert scaled[0] == pytest.approx(0.5 + 6 + 1)


def test_run_time_of_a_real_qgenx_run_charges_two_rounds_per_iteration(run_solver):
    res = run_solver(bilinear_game(4, seed=0), method="qgenx", K=3, T=20, compression="global", levels="uniform:3")
    work = Workload(d=8, compute=0.0, bits_per_coord=1.0)
    net = Network(1e6, latency=0.0)
    t = run_time(res.ledger, 3, 8, work, net, rounds_per_iteration=2)
    assert t.shape == (20,)
    rows = res.ledger.table()
    assert t[-1] == pytest.approx(2 * sum(rows[rows[:, 1] == r][:, 2:].sum(axis=1).max() for r in range(40)) / 1e6)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: Network(0.0), "bandwidth"),
        (lambda: Network(1e9, latency=-1), "latency"),
        (lambda: Network(float("nan")), "bandwidth"),
        (lambda: Network("fast"), "bandwidth"),
        (lambda: Workload(0, 1.0), "d"),
        (lambda: Workload(10, -1.0), "compute"),
        (lambda: Workload(10, 1.0, scaling="linear"), "scaling"),
        (lambda: Workload(10, 1.0, bits_per_coord=0), "bits_per_coord"),
        (lambda: Workload(10, 1.0, requant_bits_per_coord=-1), "requant_bits_per_coord"),
        (lambda: Workload(10, 1.0, bits_from_d=0), "bits_from_d"),
        (lambda: Workload(10, 1.0, reduce_per_coord=-1.0), "reduce_per_coord"),
        (lambda: Workload(10, 1.0).reduce_at(2, "ring"), "collective"),
        (lambda: Workload(10, 1.0).codec_at(2, "ring"), "collective"),
        (lambda: iteration_time("qoda", True, 2, Workload(10, 1.0), Network(1e9), "tree"), "collective"),
        (lambda: sra_time(np.ones((2, 3)), [1, 1], Network(1e9)), "chunk_bits"),
        (lambda: sra_time(np.ones((2, 2)), [1, 1, 1], Network(1e9)), "requant_bits"),
        (lambda: sra_time(np.ones((2, 2)), [1, -1], Network(1e9)), "requant_bits"),
        (lambda: traffic("bcast", 2, 10, 1.0), "collective"),
        (lambda: allgather_time([], Network(1e9)), "bits"),
        (lambda: allgather_time([1.0, float("inf")], Network(1e9)), "bits"),
        (lambda: allreduce_time(10, 0, Network(1e9)), "K"),
        (lambda: iteration_time("adam", True, 2, Workload(10, 1.0), Network(1e9)), "method"),
        (lambda: run_time(BitLedger(), 2, 10, Workload(10, 1.0), Network(1e9)), "ledger"),
    ],
)
def test_model_inputs_are_checked(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
