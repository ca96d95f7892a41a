"""CUDA kernels: under the simulator (``NUMBA_ENABLE_CUDASIM=1``, set before numba is imported, in
its own pytest invocation: ``NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim``) or on a GPU.

CPU and (simulated) GPU must produce the *same* quantized vector for the same key, and the CUDA
engine must pass the conformance suite (on small inputs: the simulator runs threads in Python)."""

from __future__ import annotations

import numpy as np
import pytest
from cases import LAYOUT, LEVELS

from qodasim import Key, LayerLayout, LayerwiseQuantizer, Levels, Quantizer
from qodasim.quantize.check import (
    check_bad_input,
    check_output_format,
    check_reproducible,
    check_unbiased,
    check_variance_matches_exact,
    check_zero_vector,
    test_vector,
)
from qodasim.quantize.core import cuda_available

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # the simulator's uint64 arithmetic wraps loudly
    pytest.mark.skipif(not cuda_available(), reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1"),
]


def pair(**kw):
    lv = kw.pop("levels", None)
    if "layout" in kw:
        return LayerwiseQuantizer(levels=lv, **kw), LayerwiseQuantizer(levels=lv, engine="cuda", **kw)
    return Quantizer(lv, **kw), Quantizer(lv, engine="cuda", **kw)


CASES = {
    "uniform-L2": dict(levels=LEVELS["uniform15"]),
    "exp-Linf-bucket": dict(levels=LEVELS["exp3"], q=np.inf, bucket_size=16),
    "random-L3": dict(levels=LEVELS["random5"], q=3.0),
    "exp-L1-bucket": dict(levels=LEVELS["exp6_p0.3"], q=1.0, bucket_size=24),
    "layerwise": dict(
        layout=LAYOUT, levels=(LEVELS["uniform4"], LEVELS["exp3"], LEVELS["random5"]), bucket_size=(None, 8, 16)
    ),  # fmt: skip
    "layerwise-global": dict(
        layout=LAYOUT, levels=(LEVELS["uniform4"], LEVELS["exp3"], LEVELS["random5"]), scope="global"
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cpu_and_gpu_give_the_same_quantized_vector(name):
    cpu, gpu = pair(**CASES[name])
    d = cpu.dimension or 300
    for seed, dtype in ((0, np.float32), (1, np.float64)):
        v = test_vector(d, seed, dtype)
        a, b = cpu.quantize(v, Key(seed, 1, 2)), gpu.quantize(v, Key(seed, 1, 2))
        if np.all(np.isin(a.plan.group_q, (1.0, 2.0, np.inf))):
            assert a.equals(b)
        else:  # q ∉ {1, 2, ∞}: the device's pow may differ in the last ulp (_cuda's docstring)
            assert np.allclose(a.norms, b.norms, rtol=1e-6)
        assert np.array_equal(a.dequantize(np.float64), b.dequantize(np.float64, engine="cuda")) or not a.equals(b)
        j1, r1, _, _ = cpu.intervals(v)
        j2, r2, _, _ = gpu.intervals(v)
        assert np.array_equal(j1, j2) and np.array_equal(r1, r2)
        assert np.isclose(cpu.exact_variance(v), gpu.exact_variance(v), rtol=1e-12)


def test_cpu_and_gpu_agree_on_coordinates_at_the_top_level():
    """t = |v_i|·s/n = s exactly (q = ∞, power-of-two maximum): the fold j = s − 1, ρ = 1 of ``split``."""
    cpu, gpu = pair(levels=LEVELS["uniform15"], q=np.inf)
    v = test_vector(200, 4, np.float32)
    v = v / (2 * np.abs(v).max())  # below 1/2, so the ±1 coordinates are the maximum
    v[::9] = 1.0
    v[1::9] = -1.0
    a, b = cpu.quantize(v, Key(2)), gpu.quantize(v, Key(2))
    assert a.equals(b) and np.all(a.indices[::9] == 15)
    j1, r1, _, _ = cpu.intervals(v)
    j2, r2, _, _ = gpu.intervals(v)
    assert np.array_equal(j1, j2) and np.array_equal(r1, r2) and np.all(r1[::9] == 1.0)


CASES["layerwise-small"] = dict(layout=LayerLayout([20, 12], [0, 1]), levels=(LEVELS["uniform4"], LEVELS["exp3"]))


@pytest.mark.parametrize("name", ["uniform-L2", "layerwise-small"])
def test_conformance_suite_on_the_cuda_engine(name):
    """The same checks as on the CPU, with fewer draws (each simulated launch costs ~0.1 s): the
    rounding law is still tested exactly (binomial), the variance within 6 standard errors.  The
    layer-wise case is small (2 layers): the simulator runs every block's threads in Python."""
    _, gpu = pair(**CASES[name])
    check_output_format(gpu, d=40)
    check_zero_vector(gpu, d=20)
    check_reproducible(gpu, d=64)
    check_bad_input(gpu)
    check_unbiased(gpu, d=32, n=60)
    check_variance_matches_exact(gpu, d=32, n=60)


def test_expected_cost_kernel_matches_numpy():
    from qodasim.coding import _payload
    from qodasim.quantize import _cuda_engine

    quant = Quantizer(Levels.uniform(6), engine="cuda")
    v = test_vector(200, 3)
    j, rho, _, plan = quant.intervals(v)
    table = _payload.dense_cost_table(6, 0).astype(float)
    got = _cuda_engine.expected_costs(j, rho, plan.coord_type(), [table])
    assert np.allclose(got, (1 - rho) * table[j] + rho * table[j + 1], rtol=1e-15)


# -- device-resident workers (DeviceWorkspace) and the solver on engine="cuda" -----------------------

WORKSPACE_CASES = {
    "global-bucket": lambda eng: Quantizer(LEVELS["uniform15"], bucket_size=16, engine=eng),
    "global-L3": lambda eng: Quantizer(LEVELS["random5"], q=3.0, engine=eng),
    "layerwise": lambda eng: LayerwiseQuantizer(
        LayerLayout([20, 12], [0, 1]), (LEVELS["uniform4"], LEVELS["exp3"]), bucket_size=(None, 8), engine=eng
    ),  # fmt: skip
    # one norm over two layers of two types: a group of several tasks (the unfused device path)
    "layerwise-global-scope": lambda eng: LayerwiseQuantizer(
        LayerLayout([20, 12], [0, 1]), (LEVELS["uniform4"], LEVELS["exp3"]), scope="global", engine=eng
    ),  # fmt: skip
}
FUSED = {"global-bucket": True, "global-L3": True, "layerwise": True, "layerwise-global-scope": False}


@pytest.mark.parametrize("name", sorted(WORKSPACE_CASES))
def test_device_workspace_equals_cpu_batch_and_stays_resident(name):
    """Quantized vectors and per-replica worker sums are the CPU's bit for bit; after the first call
    nothing is allocated on the device and only O(R·d + groups) bytes come back per call (the norm
    pass is finished on the device) — the quantized vectors (R·K·d index bytes) stay on the device
    unless asked for."""
    from qodasim.quantize import dequantize_batch
    from qodasim.quantize.device import DeviceWorkspace, worker_sums

    cpu = WORKSPACE_CASES[name]("numba")
    d, K, R = 32, 3, 2
    ws = DeviceWorkspace(WORKSPACE_CASES[name]("cuda"), d, K, R)
    allocated = ws.stats["device_allocations"] + 1  # + the upload buffer, on the first host input
    rng = np.random.default_rng(5)
    for call in range(3):
        V = rng.standard_normal((R * K, d)) * rng.uniform(0.1, 10, (R * K, 1))
        keys = [Key(9, k, call) for k in range(R * K)]
        before = ws.stats["d2h_bytes"]
        n32 = ws.quantize(V, keys)
        sums = ws.worker_sums()
        down = ws.stats["d2h_bytes"] - before
        assert ws.stats["device_allocations"] == allocated
        assert down == R * d * 8 + ws.tplan.n_groups * 4  # the worker sums and the float32 norms, nothing else
        qvs_cpu = cpu.quantize_batch(V, keys)
        assert np.array_equal(n32, np.concatenate([q.norms for q in qvs_cpu]))
        before = ws.stats["d2h_bytes"]
        for a, b in zip(ws.quantized(), qvs_cpu):
            assert a.equals(b)
        assert ws.stats["d2h_bytes"] - before == R * K * d * (cpu.index_dtype.itemsize + 1)  # on request only
        want = worker_sums(dequantize_batch(qvs_cpu).reshape(R, K, d))
        assert np.array_equal(sums, want)
    assert ws.stats["calls"] == 3 and ws.stats["device_allocations"] == allocated


def test_device_workspace_bad_input():
    from qodasim.quantize.device import DeviceWorkspace

    q = Quantizer(LEVELS["uniform4"], engine="cuda")
    ws = DeviceWorkspace(q, 10, 2)
    with pytest.raises(ValueError, match="nothing quantized"):
        ws.worker_sums()
    with pytest.raises(ValueError, match="shape"):
        ws.quantize(np.ones((3, 10)), [1, 2, 3])
    with pytest.raises(TypeError, match="dtype"):
        ws.quantize(np.ones((2, 10), np.float32), [1, 2])
    with pytest.raises(ValueError, match="keys"):
        ws.quantize(np.ones((2, 10)), [1])
    with pytest.raises(ValueError, match="n_workers"):
        DeviceWorkspace(q, 10, 0)
    with pytest.raises(ValueError, match="replicas must be at most 65535"):
        DeviceWorkspace(q, 10, 1, replicas=65536)
    with pytest.raises(ValueError, match="another plan"):
        ws.set_quantizer(Quantizer(LEVELS["uniform4"], bucket_size=4))
    with pytest.raises(ValueError, match="level-table size"):
        ws.set_quantizer(Quantizer(Levels.uniform(9)))
    bad = np.ones((2, 10))
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        ws.quantize(bad, [1, 2])


@pytest.mark.parametrize("bits", ["stream", "expected"])
def test_solver_on_the_device_equals_the_cpu_run(run_solver, bits):
    """QODA with K = 3 layer-wise quantized workers, 2 replicas and a level re-optimization: the
    device-resident run reproduces the CPU run bit for bit (iterates, measures, bits, ledger)."""
    from qodasim.vi import NoiseModel, layered_problem

    p = layered_problem([12, 20], [1.0, 0.05], types=[0, 1], seed=4)
    common = dict(method="qoda", T=8, K=3, replicas=2, compression="layerwise", levels=("uniform:3", "uniform:3"),
                  noise=NoiseModel("absolute", 0.3), seed=1, bits=bits, reoptimize_every=4, record=4)  # fmt: skip
    a = run_solver(p, engine="numba", **common)
    b = run_solver(p, engine="cuda", **common)
    assert a.status == b.status == "ok"
    assert np.array_equal(a.x_last, b.x_last) and np.array_equal(a.x_avg, b.x_avg)
    assert np.array_equal(a.bits_per_iteration, b.bits_per_iteration)
    assert all(np.array_equal(a.measures[m], b.measures[m], equal_nan=True) for m in a.measures)
    assert np.array_equal(a.ledger.table(), b.ledger.table())


def test_device_workspace_reads_device_arrays_in_place():
    """Vectors already on the device are quantized without a host round trip (no upload counted)."""
    from numba import cuda

    from qodasim.quantize.device import DeviceWorkspace

    q = Quantizer(LEVELS["uniform15"], bucket_size=16, engine="cuda")
    V = np.random.default_rng(2).standard_normal((2, 40)).astype(np.float32)
    ws = DeviceWorkspace(q, 40, 2, dtype=np.float32)
    dV = cuda.to_device(V)
    up, mem = ws.stats["h2d_bytes"], ws.stats["device_bytes"]
    ws.quantize(dV, [1, 2])
    assert ws.stats["h2d_bytes"] - up < V.nbytes  # only scales, stream bases and norms went up
    assert ws.stats["device_bytes"] == mem and ws._v is None  # no B·d upload buffer for device input
    dev = ws.quantized()
    ws.quantize(V, [1, 2])
    assert all(a.equals(b) for a, b in zip(dev, ws.quantized()))
    bad = V.copy()
    bad[1, 7] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        ws.quantize(cuda.to_device(bad), [1, 2])
    with pytest.raises(ValueError, match="shape"):
        ws.quantize(cuda.to_device(np.ascontiguousarray(V[:, :20])), [1, 2])


def test_gpu_benchmark_script_runs(tmp_path):
    """benchmarks/gpu.py runs end to end (tiny d under the simulator): GPU and CPU outputs agree."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"
    env = dict(os.environ, QODASIM_BENCH_RESULTS=str(tmp_path))
    subprocess.run([sys.executable, "-W", "ignore", str(script), "--log2d", "8", "--repeats", "1"], env=env,
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    res = json.loads((tmp_path / "gpu.json").read_text())
    assert res["gpu_equals_cpu"] == 1.0 and res["oracle_step_equal"] == 1.0


def test_edge_hashes_on_the_cuda_engine():
    """The golden edge-vector hashes of ``tests/test_edge_hashes.py`` hold on the CUDA engine too
    (vectors up to 1000 coordinates: the simulator runs every thread in Python)."""
    import hashlib
    import json

    from test_edge_hashes import GOLDEN, edge_vectors, quantizers

    golden = json.loads(GOLDEN.read_text())
    bad, n = [], 0
    for vname, v in edge_vectors().items():
        if v.size > 1000:
            continue
        for qname, q in quantizers("cuda").items():
            if not hasattr(q, "quantize"):
                q = q(v.size)
            qv = q.quantize(v, Key(7, 1, 2))
            blob = qv.indices.tobytes() + qv.signs.tobytes() + qv.norms.view(np.uint32).tobytes()
            n += 1
            if hashlib.sha256(blob).hexdigest()[:32] != golden[f"{vname}/{qname}"]:
                bad.append(f"{vname}/{qname}")
    assert n >= 60 and not bad, bad


def _twelve_layers() -> LayerLayout:
    sizes = [3, 9, 17, 1, 33, 5, 20, 2, 15, 8, 35, 2]  # a lane (32) and a block cut short in places
    return LayerLayout(sizes, [i % 3 for i in range(12)])


EDGE_SHAPES = {  # (quantizer kwargs, d): the shapes where a block, a lane or a bucket is cut short
    "d=1": (dict(levels=LEVELS["uniform4"]), 1),
    "d=33-bucket": (dict(levels=LEVELS["uniform15"], bucket_size=32), 33),
    "d<block-Linf": (dict(levels=LEVELS["exp3"], q=np.inf), 20),
    "d=50-bucket16-L1": (dict(levels=LEVELS["random5"], q=1.0, bucket_size=16), 50),
    "12-layers-3-types": (
        dict(
            layout=_twelve_layers(),
            levels=(LEVELS["uniform4"], LEVELS["exp3"], LEVELS["random5"]),
            bucket_size=(None, 8, 16),
        ),
        None,
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(EDGE_SHAPES))
def test_cpu_and_gpu_agree_on_edge_shapes(name):
    """Bit for bit on shapes that cut a lane, a block or a bucket short, in float32 and float64."""
    kw, d = EDGE_SHAPES[name]
    cpu, gpu = pair(**dict(kw))
    d = d or cpu.dimension
    for seed, dtype in ((3, np.float32), (4, np.float64)):
        v = test_vector(d, seed, dtype)
        a, b = cpu.quantize(v, Key(seed, 5)), gpu.quantize(v, Key(seed, 5))
        assert a.equals(b), name
        assert np.array_equal(a.dequantize(np.float64), b.dequantize(np.float64, engine="cuda"))
        assert np.array_equal(cpu.intervals(v)[1], gpu.intervals(v)[1])


def test_device_workspace_with_one_worker_and_a_level_switch():
    """K = 1 (the worker sum is the worker's vector) and :meth:`set_quantizer` mid-run: each call's
    result equals the CPU's with the levels in force at that call."""
    from qodasim.quantize import dequantize_batch
    from qodasim.quantize.device import DeviceWorkspace

    layout = _twelve_layers()
    first = (LEVELS["uniform4"], LEVELS["exp3"], LEVELS["random5"])
    second = (Levels.uniform(4), Levels.exponential(3, 0.4), random_levels_like(LEVELS["random5"]))
    d, R = layout.d, 2
    ws = DeviceWorkspace(LayerwiseQuantizer(layout, first, engine="cuda"), d, 1, R, dtype=np.float32)
    rng = np.random.default_rng(8)
    for call, levels in enumerate((first, second, second)):
        if call == 1:
            ws.set_quantizer(LayerwiseQuantizer(layout, levels, engine="cuda"))
        cpu = LayerwiseQuantizer(layout, levels)
        V = rng.standard_normal((R, d)).astype(np.float32)
        keys = [Key(4, r, call) for r in range(R)]
        ws.quantize(V, keys)
        want = cpu.quantize_batch(V, keys)
        assert all(a.equals(b) for a, b in zip(ws.quantized(), want))
        assert np.array_equal(ws.worker_sums(), dequantize_batch(want).astype(np.float64).reshape(R, d))


def random_levels_like(levels: Levels) -> Levels:
    """Other levels of the same size (a level re-optimization keeps the table size)."""
    rng = np.random.default_rng(21)
    return Levels.from_interior(np.sort(rng.uniform(0.0, 1.0, levels.values.size - 2)), name="random-other")


def test_cuda_engine_uploads_the_vector_once_and_caches_the_plan(monkeypatch):
    """``engine="cuda"`` outside a workspace: one upload of ``v`` per call (norm and rounding passes
    share it), and the plan arrays and level tables go up on the first call only."""
    from qodasim.quantize import _cuda_engine

    gpu = Quantizer(LEVELS["uniform15"], q=1.0, bucket_size=8, engine="cuda")
    v = test_vector(77, 2)
    gpu.quantize(v, Key(1))  # warms the plan cache
    sizes = []
    real = _cuda_engine.cuda.to_device

    def counting(a, *args, **kw):
        sizes.append(np.asarray(a).size)
        return real(a, *args, **kw)

    monkeypatch.setattr(_cuda_engine.cuda, "to_device", counting)
    qv = gpu.quantize(v, Key(2))
    assert sizes.count(v.size) == 1, sizes  # v once (no plan array has d entries here: 10 tasks)
    n_groups = qv.plan.n_groups
    assert len(sizes) == 1 + 3 + 2, sizes  # v; scale, q, need of the L1 pass; segment scales and bases
    assert max(s for s in sizes if s != v.size) <= max(n_groups, qv.plan.n_segments)


@pytest.mark.parametrize("name", sorted(WORKSPACE_CASES))
def test_device_workspace_host_combine_fallback_and_intervals(name, monkeypatch):
    """The host-combine path (kept for plans whose groups are not contiguous) gives the same result as
    the device path, and :meth:`DeviceWorkspace.intervals` equals each row's CPU ``intervals``."""
    from qodasim.quantize.device import DeviceWorkspace

    cpu = WORKSPACE_CASES[name]("numba")
    d, K, R = 32, 2, 2
    V = np.random.default_rng(11).standard_normal((R * K, d)) * np.array([[1.0], [1e-3], [50.0], [0.2]])
    keys = [Key(3, k, 1) for k in range(R * K)]
    ws = DeviceWorkspace(WORKSPACE_CASES[name]("cuda"), d, K, R)
    assert ws._device_norms and (ws._fused is not None) == FUSED[name]
    n_dev = ws.quantize(V, keys)
    J, RHO = ws.intervals()
    for b in range(R * K):
        j, rho, n32, _ = cpu.intervals(V[b])
        assert np.array_equal(J[b], j) and np.array_equal(RHO[b], rho)
    monkeypatch.setattr(DeviceWorkspace, "_norm_plan", lambda self: False)
    host = DeviceWorkspace(WORKSPACE_CASES[name]("cuda"), d, K, R)
    assert not host._device_norms
    assert np.array_equal(host.quantize(V, keys), n_dev)
    assert all(a.equals(b) for a, b in zip(host.quantized(), ws.quantized()))
