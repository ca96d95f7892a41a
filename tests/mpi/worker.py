"""Run under ``mpiexec -n K`` by tests/integration/test_mpi.py: ``worker.py MODE OUT``.

MODE ``equal``: several configs through :func:`solve_mpi`; rank 0 compares each with the in-process
:func:`solve` and writes the comparison to OUT (JSON).  ``kill``: rank 2 kills itself (SIGKILL) in
round 5.  ``corrupt``: rank 1 flips a byte of its stream in round 3.  ``hang``: rank 1 sleeps forever
in round 4 (never reaches the collective).  ``flip``: rank 1 flips the last bit of its stream in round 3
(a payload bit: the stream still decodes); with ``QODASIM_TEST_CRC=1`` the streams carry a CRC.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np
from mpi4py import MPI

from qodasim.coding import Encoder
from qodasim.solvers import SolverConfig, SolverError, solve
from qodasim.solvers.mpi import solve_mpi
from qodasim.vi import NoiseModel, bilinear_game, covariance_gan, layered_problem

comm = MPI.COMM_WORLD
K = comm.size
mode, out = sys.argv[1], sys.argv[2]


def cases():
    lay = layered_problem([20, 5, 40], [1.0, 0.05, 4.0], types=[0, 1, 0], seed=2)
    bil = bilinear_game(6, seed=1)
    yield "qoda-layerwise-R2", bil, SolverConfig(method="qoda", K=K, T=60, compression="layerwise",
                                                 levels="uniform:7", noise=NoiseModel("absolute", 1.0), replicas=2,
                                                 seed=3)  # fmt: skip
    yield (
        "qgenx-global-sparse-omega-reopt",
        lay,
        SolverConfig(
            method="qgenx",
            K=K,
            T=30,
            compression="global",
            levels="uniform:3",
            code="omega",
            protocol="sparse",
            noise=NoiseModel("mixed", 0.5, 0.2),
            seed=1,
            reoptimize_every=10,
        ),
    )
    yield (
        "qoda-layerwise-2types-delta",
        lay,
        SolverConfig(
            method="qoda",
            K=K,
            T=40,
            compression="layerwise",
            levels=("uniform:3", "exponential:4:0.5"),
            code="delta",
            noise=NoiseModel("relative", sigma_rel=0.5),
            seed=4,
            step={"rule": "adaptive", "p_gamma": 0.3},
        ),
    )
    yield (
        "popov-uncompressed-perworker-R3",
        bil,
        SolverConfig(
            method="popov",
            K=K,
            T=40,
            noise=NoiseModel("relative", sigma_rel=0.5),
            replicas=3,
            seed=2,
            step={"rule": "adaptive", "per_worker": True},
        ),
    )
    yield (
        "eg-finite-sum",
        covariance_gan(3, seed=0, n_data=200),
        SolverConfig(
            method="eg", K=K, T=25, compression="global", levels="uniform:5", noise=NoiseModel("finite_sum", batch=4)
        ),
    )
    yield "qoda-layerwise-lgreco-policy", lay, SolverConfig(method="qoda", K=K, T=30, compression="layerwise",
                                                            levels=("uniform:7", "uniform:3"), seed=5,
                                                            noise=NoiseModel("absolute", 0.5),
                                                            policy={"policy": "lgreco", "every": 10})  # fmt: skip
    yield "gda-dq-schedule", lay, SolverConfig(method="gda", K=K, T=30, step=0.3, compression="global",
                                               levels="uniform:1", noise=NoiseModel("absolute", 0.5), seed=6,
                                               policy={"policy": "dq", "c": 2.0, "rho": 0.95})  # fmt: skip
    yield "qoda-layerwise-sra-R2", lay, SolverConfig(method="qoda", K=K, T=40, compression="layerwise",
                                                     levels=("uniform:3", "exponential:4:0.5"), replicas=2, seed=7,
                                                     noise=NoiseModel("absolute", 0.5), collective="sra")  # fmt: skip
    yield "qgenx-global-sra-buckets-delta", lay, SolverConfig(method="qgenx", K=K, T=30, compression="global",
                                                               levels="uniform:5", bucket_size=8, seed=8,
                                                               noise=NoiseModel("absolute", 0.5),
                                                               collective="sra", code="delta")  # fmt: skip
    yield "qoda-layerwise-sra-lgreco", lay, SolverConfig(method="qoda", K=K, T=30, compression="layerwise",
                                                     levels=("uniform:3", "uniform:3"), seed=9,
                                                     noise=NoiseModel("absolute", 0.5), collective="sra",
                                                     policy={"policy": "lgreco", "every": 10})  # fmt: skip
    yield "qoda-diverges", bil, SolverConfig(method="qoda", K=K, T=50, step=80.0, compression="global",
                                             levels="uniform:2", noise=NoiseModel("absolute", 1.0),
                                             divergence_threshold=10.0)  # fmt: skip


if mode == "equal":
    report = []
    for name, p, cfg in cases():
        a = solve_mpi(p, cfg, timeout=20)
        if comm.rank == 0:
            b = solve(p, cfg)
            ledger_bytes = int(sum(np.ceil(row.sum() / 8) for row in a.ledger.table()[:, 2:]))
            report.append({
                "name": name, "status": [a.status, b.status], "message": [a.message, b.message],
                "x_last": bool(np.array_equal(a.x_last, b.x_last)), "x_avg": bool(np.array_equal(a.x_avg, b.x_avg)),
                "measures": all(np.array_equal(a.measures[m], b.measures[m], equal_nan=True) for m in b.measures),
                "bits": bool(np.array_equal(a.bits_per_iteration, b.bits_per_iteration)),
                "ledger": bool(np.array_equal(a.ledger.table(), b.ledger.table())),
                "replicas": cfg.replicas, "compressed": cfg.compression != "none",
                "wire_bytes": a.wire_bytes, "ledger_bytes": ledger_bytes,
            })  # fmt: skip
    if comm.rank == 0:
        with open(out, "w") as f:
            json.dump(report, f)
    sys.exit(0)

real_encode = Encoder.encode


def faulty(self, qv):
    msg = real_encode(self, qv)
    rnd = qv.key.round
    if mode == "kill" and comm.rank == 2 and rnd == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "hang" and comm.rank == 1 and rnd == 4:
        time.sleep(3600)
    if mode == "corrupt" and comm.rank == 1 and rnd == 3:
        data = bytearray(msg.data)
        data[0] ^= 0xFF  # the magic byte: every decoder must refuse it
        msg = type(msg)(bytes(data), msg.nbits, msg.bits)
    if mode == "flip" and comm.rank == 1 and rnd == 3:
        data = bytearray(msg.data)
        data[(msg.nbits - 1) // 8] ^= 0x80 >> ((msg.nbits - 1) % 8)  # the stream's last bit
        msg = type(msg)(bytes(data), msg.nbits, msg.bits)
    return msg


Encoder.encode = faulty
p = bilinear_game(6, seed=1)
cfg = SolverConfig(method="qoda", K=K, T=200, compression="global", levels="uniform:7",
                   noise=NoiseModel("absolute", 1.0))  # fmt: skip
timeout = float(os.environ.get("QODASIM_TEST_TIMEOUT", "5"))
try:
    res = solve_mpi(p, cfg, timeout=timeout, crc=os.environ.get("QODASIM_TEST_CRC") == "1")
    if comm.rank == 0 and out != "-":
        with open(out, "w") as f:
            json.dump({"gap": float(res.measures["gap_avg"][0, -1]), "status": res.status}, f)
except SolverError as exc:
    from qodasim.solvers.mpi import abort

    abort(comm, f"error: {exc}", code=2)
sys.exit(0)
