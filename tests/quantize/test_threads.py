"""Threads: small work never wakes the thread pool, serial and parallel kernels give the same bits,
a forked child runs parallel kernels after its parent did, and the thread count is the user's."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numba
import numpy as np
import pytest
from cases import QUANTIZERS

from qodasim import Key, Levels, Quantizer, threads
from qodasim.cli import main
from qodasim.quantize import _numba, dequantize_sum
from qodasim.quantize import _numba_engine as engine

PARALLEL_KERNELS = ("task_max_sumsq", "task_scaled_powsum", "round_kernel", "dequantize_kernel",
                    "sum_dequantize_kernel", "interval_kernel", "task_phi_sum")  # fmt: skip


def _batch(quant, rows: int, seed: int):
    d = quant.dimension or 5000
    V = np.random.default_rng(seed).standard_normal((rows, d)).astype(np.float32)
    V[:, ::7] *= 1e-3  # scales spread over the vector
    return V, [Key(seed, k, 3) for k in range(rows)]


def _everything(quant, V, keys, rows):
    """Every engine entry point: batch quantize, one-pass sum, dequantize, intervals, exact variance."""
    qvs = quant.quantize_batch(V, keys)
    return (
        [(q.indices.copy(), q.signs.copy(), q.norms.copy()) for q in qvs],
        dequantize_sum(qvs, rows // 2),
        qvs[0].dequantize(),
        quant.intervals(V[0]),
        quant.exact_variance(V[0]),
    )


def _equal(a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_serial_and_parallel_kernels_give_the_same_bits_on_every_plan(monkeypatch, name):
    """Every entry point with the work threshold at 0 (always the thread pool) and at 2^62 (never):
    identical bytes, for global, bucketed and layer-wise plans in batches of 4 rows."""
    quant = QUANTIZERS[name]
    V, keys = _batch(quant, 4, 7)
    monkeypatch.setattr(threads, "PARALLEL_MIN", 0)
    parallel = _everything(quant, V, keys, 4)
    monkeypatch.setattr(threads, "PARALLEL_MIN", 1 << 62)
    serial = _everything(quant, V, keys, 4)
    assert _equal(parallel, serial)


def _boom(*args):
    raise AssertionError("a parallel kernel ran on small work")


def test_small_batches_and_layerwise_plans_never_wake_the_thread_pool(monkeypatch):
    """Many-task plans (buckets of 7, four layers) batched over 16 workers: below PARALLEL_MIN
    coordinates every call takes the serial twin; above it, the parallel kernel."""
    for k in PARALLEL_KERNELS:
        monkeypatch.setattr(_numba, k, _boom)
    for name in ("global-exp6-L1-bucket7", "layer-scope-buckets-mixed-q", "global-scope-M3"):
        quant = QUANTIZERS[name]
        V, keys = _batch(quant, 16, 1)
        assert quant.plan(V.shape[1]).task_start.size > 1
        _everything(quant, V, keys, 16)  # would raise if a parallel kernel were called
    monkeypatch.undo()
    quant = Quantizer(Levels.uniform(3), bucket_size=7)
    d = threads.PARALLEL_MIN // 2
    plan = quant.plan(d)
    assert engine._k(plan, "round_kernel") is _numba.SERIAL["round_kernel"]
    assert engine._k(plan, "round_kernel", rows=2) is _numba.round_kernel  # 2 rows reach the threshold
    assert engine._k(quant.plan(d - 1), "round_kernel", rows=2) is _numba.SERIAL["round_kernel"]


FORK_SCRIPT = """
import multiprocessing, numpy as np
from qodasim import Key, Levels, Quantizer, threads
threads.PARALLEL_MIN = 1 << 10  # parallel kernels on both sides

def h(v):
    qv = Quantizer(Levels.uniform(7), bucket_size=4096).quantize(v, Key(3))
    return qv.indices.tobytes() + qv.signs.tobytes() + qv.norms.tobytes()

if __name__ == "__main__":
    v = np.random.default_rng(0).standard_normal(300_000).astype(np.float32)
    parent = h(v)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(h, (v,)).get(timeout=60)
    print(threads.threading_layer(), child == parent)
"""


@pytest.mark.integration
def test_a_forked_child_runs_parallel_kernels_after_its_parent(tmp_path):
    """Fork start method, after the parent ran a parallel kernel (Numba's GNU OpenMP layer kills such
    a child: the pool then waits forever): the child's quantized vector equals the parent's, bit for
    bit.  A fresh interpreter, so that no other library's threads are in the forked process."""
    script = tmp_path / "fork_check.py"
    script.write_text(FORK_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "NUMBA_NUM_THREADS")}
    env["NUMBA_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["workqueue", "True"], out.stdout


def test_thread_count_is_validated_and_applied(monkeypatch):
    before = threads.get_threads()
    try:
        threads.set_threads(1)
        assert threads.get_threads() == numba.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads must be in 1"):
            threads.set_threads(0)
        with pytest.raises(ValueError, match="threads must be in 1"):
            threads.set_threads(int(numba.config.NUMBA_NUM_THREADS) + 1)
        with pytest.raises(TypeError, match="threads must be an integer"):
            threads.set_threads(True)
        with pytest.raises(TypeError, match="threads must be an integer"):
            threads.set_threads(1.0)
        monkeypatch.setenv("QODASIM_THREADS", "x")
        with pytest.raises(ValueError, match="QODASIM_THREADS must be an integer, got 'x'"):
            threads.apply_env(strict=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            threads.apply_env()
        assert any("QODASIM_THREADS" in str(w.message) for w in caught)
        monkeypatch.setenv("QODASIM_THREADS", "0")
        with pytest.raises(ValueError, match="QODASIM_THREADS must be in 1"):
            threads.apply_env(strict=True)
        monkeypatch.setenv("QODASIM_THREADS", "1")
        threads.set_threads(before)
        threads.apply_env(strict=True)
        assert threads.get_threads() == 1
    finally:
        numba.set_num_threads(before)


def test_cli_threads_option(monkeypatch, capsys):
    before = threads.get_threads()
    try:
        assert main(["bounds", "--levels", "uniform:4", "--d", "16", "--threads", "1"]) == 0
        assert threads.get_threads() == 1
        monkeypatch.setenv("QODASIM_THREADS", "zero")
        assert main(["bounds", "--levels", "uniform:4", "--d", "16"]) == 2
        assert "QODASIM_THREADS must be an integer" in capsys.readouterr().err
        monkeypatch.delenv("QODASIM_THREADS")
        with pytest.raises(SystemExit) as exc:
            main(["bounds", "--levels", "uniform:4", "--threads", "0"])
        assert exc.value.code == 2
        with pytest.raises(SystemExit) as exc:
            main(["--version"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("qodasim ") and "threading layer" in out
    finally:
        numba.set_num_threads(before)


def test_serial_runs_the_serial_twins_with_the_same_bits():
    """Inside threads.serial() a call above PARALLEL_MIN takes the serial kernel (no thread pool, nothing
    parallel compiled) and gives the parallel call's bits; the switch is restored on exit, also after
    an exception."""
    v = np.random.default_rng(3).standard_normal(threads.PARALLEL_MIN + 5).astype(np.float32)
    quant = Quantizer(Levels.uniform(3))
    plan = quant.plan(v.size)
    assert threads.use_parallel(v.size) and engine._k(plan, "task_max_sumsq") is _numba.task_max_sumsq
    par = quant.quantize(v, Key(4))
    with threads.serial():
        assert not threads.use_parallel(10**9)
        assert engine._k(plan, "task_max_sumsq") is _numba.SERIAL["task_max_sumsq"]
        ser = quant.quantize(v, Key(4))
    assert ser.equals(par) and threads.use_parallel(v.size)
    with pytest.raises(RuntimeError), threads.serial():
        raise RuntimeError
    assert threads.use_parallel(v.size)
