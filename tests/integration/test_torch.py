"""qodasim.torch: the DDP communication hook, its ledger and the gradient recorder.

The hook's logic runs in-process on fake buckets and on a real one-rank gloo group (default run);
two real gloo ranks started by torchrun run under the ``integration`` marker.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("QODASIM_REQUIRE_TORCH") == "1":  # CI installs torch: a skip there would hide a red test
    import torch
else:
    torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
from cases import check_analysis_by_monte_carlo  # noqa: E402

import qodasim.torch as qt  # noqa: E402
from qodasim import LayerLayout  # noqa: E402
from qodasim.coding import encode  # noqa: E402

WORKER = Path(__file__).resolve().parents[1] / "ddp" / "worker.py"


class FakeBucket:
    """What DDP hands a hook: a flat buffer, its parameters, an index and whether it is the last."""

    def __init__(self, params, index=0, last=True, dtype=torch.float32):
        self._params = params
        self._buf = torch.cat([p.grad.reshape(-1) for p in params]).to(dtype)
        self._index, self._last = index, last

    def buffer(self):
        return self._buf

    def parameters(self):
        return self._params

    def index(self):
        return self._index

    def is_last(self):
        return self._last


def _model(seed=0):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 10))
    m(torch.randn(4, 1, 8, 8)).square().sum().backward()
    return m


@pytest.mark.parametrize("scheme", ["layerwise", "global", "bucketed", "fp32"])
def test_one_rank_hook_equals_replay_bit_for_bit(scheme):
    m = _model()
    state = qt.QuantizeState(m, scheme=scheme, levels=("uniform:3", "uniform:7", "uniform:5") if scheme == "layerwise"
                             else "uniform:7", types="role", bucket_size=64, seed=3, record_inputs=True)  # fmt: skip
    params = list(m.parameters())
    b = FakeBucket(params)
    g = b.buffer().numpy().copy()
    out = qt.hook(state, b).value().numpy()
    layout, raw = state.bucket_layout(params)
    ref = qt.replay_bucket(state, layout, raw, [g], 0, 0)
    assert np.array_equal(out, torch.from_numpy(ref).float().numpy())
    if scheme == "fp32":
        assert np.array_equal(out, g)
    else:
        assert not np.array_equal(out, g)  # quantized
    assert state.step == 1 and state.inputs[0][1] == 0


def test_ledger_bits_are_the_stream_bits():
    m = _model()
    state = qt.QuantizeState(m, levels=("uniform:3", "uniform:7", "uniform:5"), types="role", exclude=["*.bias"])
    params = list(m.parameters())
    for _ in range(3):
        qt.hook(state, FakeBucket(params))
    layout, raw = state.bucket_layout(params)
    assert raw.tolist() == [False, True, False, True]
    for msg in state.ledger.messages:
        assert math.ceil(msg["bits"] / 8) == msg["bytes"]
        assert msg["bits"] == msg["header"] + msg["level_tables"] + msg["norms"] + msg["payload"] + msg["raw"]
        per_layer = [r for r in state.ledger.layers if r["step"] == msg["step"]]
        q = sum(r["bits"] for r in per_layer if not r["layer"].endswith("bias"))
        assert q == msg["payload"]  # per-layer payload bits add up to the stream's
        assert sum(r["bits"] for r in per_layer if r["layer"].endswith("bias")) == msg["raw"] == 32 * (3 + 10)
    assert state.ledger.messages[0]["level_tables"] > 0 and state.ledger.messages[1]["level_tables"] == 0
    # the stream of a fresh encoder, rebuilt from the key, has the payload the ledger recorded
    sub = LayerLayout(layout.sizes[~raw], layout.types[~raw], n_types=layout.n_types)
    g = FakeBucket(params).buffer().numpy()[np.concatenate([np.arange(layout.offsets[i], layout.offsets[i + 1])
                                                            for i in np.flatnonzero(~raw)])]  # fmt: skip
    msg = encode(state.quantizer(sub).quantize(g, state.key(0, 0, step=0)))
    assert msg.bits["payload"] == state.ledger.messages[0]["payload"]
    assert state.ledger.ratio() == pytest.approx(32 * 3 * layout.d / state.ledger.total_bits())


def test_half_precision_buffers_and_state_dict():
    m = _model()
    params = list(m.parameters())
    for dtype in (torch.float16, torch.bfloat16):
        state = qt.QuantizeState(m, levels="uniform:7", seed=1)
        b = FakeBucket(params, dtype=dtype)
        out = qt.hook(state, b).value()
        assert out.dtype == dtype and torch.isfinite(out.float()).all()
    saved = state.state_dict()
    other = qt.QuantizeState(m, levels="uniform:7", seed=1)
    other.load_state_dict(saved)
    assert other.step == 1 and other.ledger.total_bits() == state.ledger.total_bits()
    with pytest.raises(ValueError, match="seed"):
        qt.QuantizeState(m, levels="uniform:7", seed=2).load_state_dict(saved)


def test_empty_bucket_and_torch_files(tmp_path):
    from qodasim.experiments.analyze import analyze

    m = _model()
    state = qt.QuantizeState(m, levels="uniform:7")
    empty = torch.nn.Parameter(torch.zeros(0))
    empty.grad = torch.zeros(0)
    out = qt.hook(state, FakeBucket([empty])).value()
    assert out.numel() == 0 and state.step == 1 and not state.ledger.messages
    grads = {n: p.grad for n, p in m.named_parameters()}
    torch.save(grads, tmp_path / "g.pt")
    np.savez(tmp_path / "g.npz", **{n: g.numpy() for n, g in grads.items()})
    a = analyze(tmp_path / "g.pt", bits=[3], codes=["gamma"], schemes=["qsgd"], types="role")
    b = analyze(tmp_path / "g.npz", bits=[3], codes=["gamma"], schemes=["qsgd"], types="role")
    assert a.rows == b.rows and a.layout.shapes == b.layout.shapes
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="dict of tensors"):
        analyze(tmp_path / "list.pt")


def test_bad_configuration_names_the_argument():
    m = _model()
    with pytest.raises(ValueError, match="scheme"):
        qt.QuantizeState(m, scheme="topk")
    with pytest.raises(ValueError, match="types='auto'"):
        qt.QuantizeState(m, types="auto")
    with pytest.raises(ValueError, match="levels"):
        qt.QuantizeState(m, levels=("uniform:3", "uniform:7"), types="role")  # 3 roles, 2 sequences
    with pytest.raises(ValueError, match="bucket_size"):
        qt.QuantizeState(m, scheme="bucketed", bucket_size=0)
    with pytest.raises(TypeError, match="model"):
        qt.QuantizeState(object())
    with pytest.raises(ValueError, match="code"):
        qt.QuantizeState(m, code="zeta")


def test_a_bucket_its_parameters_do_not_fill_is_one_layer():
    m = _model()
    params = list(m.parameters())
    state = qt.QuantizeState(m, levels=("uniform:3", "uniform:7", "uniform:5"), types="role", seed=2)
    for step in range(3):
        b = FakeBucket(params)
        b._buf = torch.cat([b._buf, torch.ones(3)])  # padding DDP may add
        g = b.buffer().numpy().copy()
        out = qt.hook(state, b).value().numpy()
        layout, raw = state.bucket_layout(params, g.size)
        assert layout.n_layers == 1 and layout.d == g.size
        assert np.array_equal(out, torch.from_numpy(qt.replay_bucket(state, layout, raw, [g], 0, step)).float().numpy())
    assert len(state._layouts) == 1 and len(state._quantizers) == 1  # cached, not rebuilt per step


def test_world_of_one_rank_with_ddp():
    """A real one-rank gloo group: DDP calls the hook; an unused parameter keeps its value."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = torch.nn.ModuleDict({"a": torch.nn.Linear(4, 3), "unused": torch.nn.Linear(2, 2)})

        class Wrap(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.m = model

            def forward(self, x):
                return self.m["a"](x)

        net = Wrap()
        ddp = DDP(net, find_unused_parameters=True)
        state = qt.QuantizeState(net, levels="uniform:15", seed=0)
        ddp.register_comm_hook(state, qt.hook)
        before = model["unused"].weight.detach().clone()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            ddp(torch.randn(5, 4)).sum().backward()
            opt.step()
        assert state.step == 3 and len(state.ledger.messages) >= 3
        assert torch.equal(model["unused"].weight, before)
    finally:
        dist.destroy_process_group()


def test_recorder_snapshots_feed_analyze(tmp_path):
    from qodasim.experiments.analyze import analyze

    m = _model()
    rec = qt.GradientRecorder(m, every=2, folder=tmp_path)
    for _ in range(5):
        m.zero_grad()
        m(torch.randn(4, 1, 8, 8)).square().sum().backward()
        rec.step()
    assert [p.name for p in rec.paths] == ["grads_step000000.npz", "grads_step000002.npz", "grads_step000004.npz"]
    with np.load(rec.paths[0]) as z:
        assert z["0.weight"].shape == (3, 1, 3, 3)
    res = analyze(rec.paths, bits=[3], types="role", codes=["gamma"], schemes=["qsgd", "layer-opt"])
    assert res.snapshots == [p.name for p in rec.paths] and len(res.rows) == 6
    with pytest.raises(ValueError, match="every"):
        qt.GradientRecorder(m, every=0)
    with pytest.raises(ValueError, match="include"):
        qt.GradientRecorder(m, include="nothing*")


def test_analyze_on_gradients_recorded_from_training(tmp_path):
    """The must-show check on a real model's gradients: a CNN trained on digits, snapshots at the start,
    middle and end; the middle one's every scheme against Monte Carlo and the encoder."""
    from sklearn.datasets import load_digits

    from qodasim.experiments.analyze import analyze

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y)
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                            torch.nn.Linear(8 * 36, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))  # fmt: skip
    opt = torch.optim.SGD(m.parameters(), lr=0.2)
    rec = qt.GradientRecorder(m, every=20, folder=tmp_path)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(41):
        idx = torch.randint(0, X.shape[0], (64,), generator=gen)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(X[idx]), y[idx])
        loss.backward()
        rec.step()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2  # it learned
    res = analyze(rec.paths, bits=[3], types="role", codes=["gamma"])
    assert len(res.snapshots) == 3
    with np.load(rec.paths[1]) as z:
        mid = {k: z[k] for k in z.files}
    middle = analyze(mid, bits=[3], types="role", codes=["gamma"])
    check_analysis_by_monte_carlo(middle, middle.layout.flatten(mid, np.float64), 3.0)


# ------------------------------------------------------------------------------ two gloo ranks
def _torchrun(tmp: Path, scheme: str, steps: int = 6, world: int = 2) -> list[tuple[dict, dict]]:
    out = tmp / scheme
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world), "--rdzv_backend", "c10d",
           "--rdzv_endpoint", "localhost:0", str(WORKER), scheme, str(steps), str(out)]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:  # where each rank stopped, then the output's start and end
        reached = {p.name: p.read_text().splitlines()[-1:] for p in sorted(out.glob("rank*.progress"))}
        raise AssertionError(
            f"torchrun exited {r.returncode}; ranks reached {reached}\n{r.stderr[:2000]}\n...\n"
            f"{r.stdout[-2000:]}{r.stderr[-3000:]}"
        )
    ranks = []
    for k in range(world):
        with np.load(out / f"rank{k}.npz") as z:
            arrays = {n: z[n] for n in z.files}
        ranks.append((arrays, json.loads((out / f"rank{k}.json").read_text())))
    return ranks


@pytest.mark.integration
def test_two_ranks_fp32_passthrough_matches_ddp_allreduce(tmp_path):
    base = _torchrun(tmp_path, "default")
    mine = _torchrun(tmp_path, "fp32")
    for (a, _), (b, _) in zip(base, mine):
        for n in a:
            if n.startswith("param/"):
                np.testing.assert_allclose(b[n], a[n], rtol=1e-5, atol=1e-6, err_msg=n)
    assert np.array_equal(mine[0][0]["param/fc1.weight"], mine[1][0]["param/fc1.weight"])


@pytest.mark.integration
def test_two_ranks_layerwise_replay_and_ledger(tmp_path):
    ranks = _torchrun(tmp_path, "layerwise")
    (a0, info0), (a1, _) = ranks
    for n in a0:  # every rank holds the same parameters
        if n.startswith("param/"):
            assert np.array_equal(a0[n], a1[n]), n
    # replay in this process: the recorded local gradients, the same keys, no streams
    torch.manual_seed(0)
    sys.path.insert(0, str(WORKER.parent))
    try:
        from worker import Net
    finally:
        sys.path.pop(0)
    model = Net()
    for n, p in model.named_parameters():
        assert np.array_equal(p.detach().numpy(), a0[f"init/{n}"])
    params = dict(model.named_parameters())
    state = qt.QuantizeState(model, levels=("uniform:3", "uniform:7", "uniform:15"), types="role", seed=11)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = sorted({int(k.split("/")[1]) for k in a0 if k.startswith("input/")})
    buckets = {int(b): names for b, names in info0["buckets"].items()}
    for t in steps:
        opt.zero_grad()
        for b, names in buckets.items():
            layout, raw = state.bucket_layout([params[n] for n in names])
            avg = qt.replay_bucket(state, layout, raw, [a0[f"input/{t}/{b}"], a1[f"input/{t}/{b}"]], b, t)
            avg = torch.from_numpy(avg).float()
            for n, sl in zip(names, (layout.layer_slice(i) for i in range(layout.n_layers))):
                params[n].grad = avg[sl].reshape(params[n].shape).clone()
        opt.step()
    for n, p in model.named_parameters():
        assert np.array_equal(p.detach().numpy(), a0[f"param/{n}"]), f"{n} differs from the replay"
    # unused parameters never move
    assert np.array_equal(a0["param/unused.weight"], a0["init/unused.weight"])
    # the ledger's bits are the bytes the collectives moved, each message rounded up to a byte
    for k, (_, info) in enumerate(ranks):
        msgs = info["ledger"]["messages"]
        sizes = info["moved"]["sizes"]
        assert len(sizes) == len(msgs)
        for m, s in zip(msgs, sizes):
            assert s[k] == m["bytes"] == math.ceil(m["bits"] / 8)
        data_bytes = info["moved"]["bytes_in"] - 8 * len(sizes)  # minus the size exchanges
        assert data_bytes == sum(max(s) for s in sizes)  # each rank padded only to the longest message


def _sra_ranks(m, K, G, steps=2, **kw):
    """``K`` ranks of the hook's SRA in one process (:mod:`qodasim.torch.sra`'s three steps, the
    exchanges done by hand): per step, every rank's bucket and its count of what it sent."""
    from qodasim.torch import sra

    params = list(m.parameters())
    states = [qt.QuantizeState(m, collective="sra", **kw) for _ in range(K)]
    plans = [sra.sra_plan(st, *st.bucket_layout(params, G.shape[2]), K) for st in states]
    out = []
    for step in range(steps):
        rnd = step * 2**16  # the key round of bucket 0 at this step
        s1 = [sra.stage1(states[k], plans[k], G[step, k], k, 0, rnd) for k in range(K)]
        s2 = [sra.reduce_stage(states[j], plans[j], [s1[k][0][j] for k in range(K)], s1[j][1], j, 0, rnd, s1[j][2])
              for j in range(K)]  # fmt: skip
        buckets = [sra.assemble(states[k], plans[k], [s2[j][0] for j in range(K)], s2[k][1], k, 0, rnd)
                   for k in range(K)]  # fmt: skip
        out.append((buckets, [s1[k][0] for k in range(K)], [s2[k][0] for k in range(K)], [s1[k][2] for k in range(K)]))
    return states, plans, out


@pytest.mark.parametrize("scheme", ["layerwise", "global", "bucketed", "fp32"])
@pytest.mark.parametrize("K,exclude", [(3, ()), (4, ("*.bias",)), (2, ("0.*",))])
def test_sra_ranks_agree_with_the_simulation_bit_for_bit(scheme, K, exclude):
    """K ranks' SRA (streams, chunk channels, owners' means) give every rank the same bucket: the
    simulation's two-stage aggregate (``solvers.sra.sra_aggregate``) on the quantized layers, and on
    the raw layers exactly the all-gather's average; the ledger counts the messages' bits."""
    from qodasim.solvers.sra import sra_aggregate

    m = _model()
    params = list(m.parameters())
    d = sum(p.numel() for p in params)
    G = np.random.default_rng(K).standard_normal((2, K, d)).astype(np.float32)
    levels = ("uniform:3", "uniform:7", "uniform:5") if scheme == "layerwise" else "uniform:7"
    kw = dict(scheme=scheme, levels=levels, types="role", bucket_size=40, seed=9, exclude=exclude)
    states, plans, out = _sra_ranks(m, K, G, **kw)
    layout, raw = states[0].bucket_layout(params, d)
    plain = qt.QuantizeState(m, **kw)  # the all-gather
    for step, (buckets, s1, s2, sent) in enumerate(out):
        for b in buckets:
            assert np.array_equal(b, buckets[0])
        assert np.array_equal(buckets[0], qt.replay_bucket(states[0], layout, raw, G[step], 0, step))
        ag = qt.replay_bucket(plain, layout, raw, G[step], 0, step)
        p = plans[0]
        assert np.array_equal(buckets[0][p.raw_idx], ag[p.raw_idx].astype(np.float32))
        if p.chunk_q:  # the quantized layers: the simulation's aggregate of the same keys
            q = states[0].quantizer(p.sub)
            V = G[step] if p.idx is None else G[step][:, p.idx]
            x = buckets[0] if p.idx is None else buckets[0][p.idx]
            assert np.array_equal(x, sra_aggregate(V, q, 9, step * 2**16).aggregate)
            assert not np.array_equal(x, ag if p.idx is None else ag[p.idx])
        for k in range(K):
            c = sent[k]
            assert s1[k][k] == b"" and c.nbytes == sum(len(x) for x in s1[k]) + len(s2[k])
            assert c.bits == sum(c.fields[f] for f in ("header", "level_tables", "norms", "payload", "raw"))
            assert c.bits + c.fields["padding"] == 8 * c.nbytes
            sent_raw = raw | (scheme == "fp32")  # fp32 sends every layer raw
            assert c.layer_bits[sent_raw].sum() == c.fields["raw"]
            assert c.layer_bits[~sent_raw].sum() == c.fields["payload"]
            assert (c.fields["level_tables"] > 0) == (step == 0 and scheme != "fp32")  # tables once per channel


def test_sra_hook_on_one_rank_and_its_fallback():
    """The hook's SRA on a world of one rank: the replay bit for bit (two quantizations, so not the
    all-gather's result), a ledger row marked ``sra``; a bucket whose quantized part has fewer
    coordinates than ranks goes by the all-gather."""
    from qodasim.torch import sra

    m = _model()
    params = list(m.parameters())
    state = qt.QuantizeState(m, levels="uniform:7", seed=4, collective="sra", record_inputs=True)
    plain = qt.QuantizeState(m, levels="uniform:7", seed=4)
    for step in range(2):
        b = FakeBucket(params)
        g = b.buffer().numpy().copy()
        out = qt.hook(state, b).value().numpy()
        layout, raw = state.bucket_layout(params)
        ref = qt.replay_bucket(state, layout, raw, [g], 0, step)
        assert np.array_equal(out, torch.from_numpy(ref).float().numpy())
        assert not np.array_equal(out, qt.hook(plain, FakeBucket(params)).value().numpy())
    row = state.ledger.messages[-1]
    assert row["collective"] == "sra" and row["stage1_bytes"] == [0] and row["bytes"] == row["stage2_bytes"]
    assert plain.ledger.messages[-1]["collective"] == "allgather"
    tiny = qt.QuantizeState(m, levels="uniform:7", collective="sra", exclude=["*.weight"])
    lay, r = tiny.bucket_layout(params)  # 3 + 10 quantized coordinates
    assert sra.sra_plan(tiny, lay, r, 13) is not None and sra.sra_plan(tiny, lay, r, 14) is None
    with pytest.raises(ValueError, match="collective"):
        qt.QuantizeState(m, collective="ring")
    with pytest.raises(ValueError, match="collective"):
        plain.load_state_dict(state.state_dict())


@pytest.mark.integration
def test_three_ranks_sra_replay_and_ledger(tmp_path):
    """Three gloo ranks, the hook's SRA (all-to-all of chunk streams, owners' re-quantized chunks
    all-gathered), biases raw: every rank holds the same parameters, the one-process replay gives
    them bit for bit, and the ledger's bytes are the bytes the collectives moved; uncompressed
    (``fp32``) SRA trains as DDP's all-reduce does."""
    ranks = _torchrun(tmp_path, "layerwise:sra:x", world=3)
    (a0, info0) = ranks[0]
    for a, _ in ranks[1:]:
        for n in a0:
            if n.startswith("param/"):
                assert np.array_equal(a0[n], a[n]), n
    sys.path.insert(0, str(WORKER.parent))
    try:
        from worker import Net
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    model = Net()
    params = dict(model.named_parameters())
    state = qt.QuantizeState(model, levels=("uniform:3", "uniform:7", "uniform:15"), types="role", seed=11,
                             collective="sra", exclude=("*.bias",))  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    buckets = {int(b): names for b, names in info0["buckets"].items()}
    for t in sorted({int(k.split("/")[1]) for k in a0 if k.startswith("input/")}):
        opt.zero_grad()
        for b, names in buckets.items():
            layout, raw = state.bucket_layout([params[n] for n in names])
            grads = [a[f"input/{t}/{b}"] for a, _ in ranks]
            avg = torch.from_numpy(qt.replay_bucket(state, layout, raw, grads, b, t)).float()
            for n, sl in zip(names, (layout.layer_slice(i) for i in range(layout.n_layers))):
                params[n].grad = avg[sl].reshape(params[n].shape).clone()
        opt.step()
    for n, p in model.named_parameters():
        assert np.array_equal(p.detach().numpy(), a0[f"param/{n}"]), f"{n} differs from the replay"
    for k, (_, info) in enumerate(ranks):
        rows = info["ledger"]["messages"]
        assert {r["collective"] for r in rows} == {"sra"}
        a2a, gathered = info["moved"]["a2a_sizes"], info["moved"]["sizes"]
        assert len(a2a) == len(gathered) == len(rows)
        for r, sent, got in zip(rows, a2a, gathered):
            assert sent == r["stage1_bytes"] and sent[k] == 0 and got[k] == r["stage2_bytes"]
            assert r["bytes"] == sum(sent) + got[k] and r["bits"] + r["padding"] == 8 * r["bytes"]
    base = _torchrun(tmp_path, "default", world=3)
    mine = _torchrun(tmp_path, "fp32:sra", world=3)
    for (a, _), (b, _) in zip(base, mine):
        for n in a:
            if n.startswith("param/"):
                np.testing.assert_allclose(b[n], a[n], rtol=1e-5, atol=1e-6, err_msg=n)


@pytest.mark.cudasim
def test_the_cuda_engine_gives_the_hook_the_same_bits():
    """``engine="cuda"`` (the toolkit's CUDA kernels; here under the simulator) sends the same bytes
    and writes the same average as the CPU kernels."""
    from qodasim.quantize.core import cuda_available

    if not cuda_available():
        pytest.skip("needs a GPU or NUMBA_ENABLE_CUDASIM=1")
    m = _model()
    params = list(m.parameters())
    outs = {}
    cases = [("layerwise", "allgather"), ("bucketed", "allgather"), ("layerwise", "sra")]
    for engine in ("numba", "cuda"):
        for scheme, collective in cases:
            levels = ("uniform:3", "uniform:7", "uniform:5") if scheme == "layerwise" else "uniform:7"
            state = qt.QuantizeState(m, scheme=scheme, levels=levels, types="role", bucket_size=32, engine=engine,
                                     collective=collective)  # fmt: skip
            out = qt.hook(state, FakeBucket(params)).value().numpy().copy()
            outs[engine, (scheme, collective)] = (out, state.ledger.messages[0])
            assert {qz.engine for _, qz in state._quantizers.values()} == {engine}
    for case in cases:
        assert np.array_equal(outs["numba", case][0], outs["cuda", case][0])
        assert outs["numba", case][1] == outs["cuda", case][1]


def test_the_language_model_example_records_three_snapshots_realnets_reads(tmp_path, monkeypatch):
    """examples/record_lm_gradients.py at a tiny size: snapshots at the first, middle and last step with
    every tensor's gradient, the loss curve, and realnets reads them with types by role."""
    import importlib.util

    from qodasim.experiments import realnets

    path = Path(__file__).resolve().parents[2] / "examples" / "record_lm_gradients.py"
    spec = importlib.util.spec_from_file_location("record_lm_gradients", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "g"
    args = ["--out", str(out), "--steps", "5", "--width", "16", "--blocks", "2", "--heads", "2", "--context", "16",
            "--batch", "2", "--text-mb", "0.05"]  # fmt: skip
    assert mod.main(args) == 0
    assert sorted(p.name for p in out.glob("*.npz")) == [f"grads_step{t:06d}.npz" for t in (0, 2, 4)]
    loss = json.loads((out / "loss.json").read_text())
    assert len(loss["loss"]) == 5 and loss["tensors"] == 2 + 12 * 2 + 2
    monkeypatch.chdir(tmp_path)
    (name, layout, v), *_ = realnets.recorded_vectors(["g/grads_step*.npz"])
    assert name == "grads_step000000" and layout.n_layers == 28 and layout.n_types == 3 and np.any(v)
    assert layout.names[0] == "wte.weight" and layout.types[0] == 0  # the embedding is its own type


@pytest.mark.integration  # an example's training runs end to end (13 s): CI's integration invocation
def test_the_training_per_bit_example_reads_every_run_at_equal_bits(tmp_path):
    """examples/train_per_bit.py at a tiny size: every quantized run of a (budget, optimizer, seed) is
    read at the same total bits — the least any of them sent — and the summary ranks both metrics."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "train_per_bit.py"
    spec = importlib.util.spec_from_file_location("train_per_bit", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "t.json"
    assert mod.main(["--out", str(out), "--steps", "6", "--seeds", "2", "--budgets", "3", "--optimizers", "adam",
                     "--eval-every", "2"]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    rows = [r for r in res["rows"] if r["scheme"] != "fp32"]
    assert len(rows) == 2 * len(mod.SCHEMES) and len(res["rows"]) == len(rows) + 2
    for seed in (0, 1):
        peers = [r for r in rows if r["seed"] == seed]
        common = {r["common_bits"] for r in peers}
        assert len(common) == 1 and min(r["curve"][-1][1] for r in peers) == common.pop()
        for r in peers:  # read on its own curve at the common bits
            bits, loss = zip(*[(c[1], c[2]) for c in r["curve"]])
            assert r["loss_at_common_bits"] == pytest.approx(np.interp(r["common_bits"], bits, loss))
            assert r["variance"] > 0 and r["mean_layer_rel"] > 0
    cell = res["summary"]["3 bits, adam"]
    assert set(cell["schemes"]) == {"fp32", *mod.SCHEMES} and -1 <= cell["variance"]["spearman"] <= 1
