"""Compressed scatter-reduce-allgather (qodasim.solvers.sra, THEORY §8): chunks, keys, the two-stage
aggregate's mean and variance, and its bits against real encoded chunk streams."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim import Key, LayerLayout, LayerwiseQuantizer, Levels, Quantizer
from qodasim.coding import Encoder
from qodasim.solvers.sra import (
    chunk_bounds,
    chunk_quantizers,
    piece_quantizer,
    sra_aggregate,
    sra_bits,
    sra_variance,
    stage2_seed,
)


def _vectors(K: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(d) * np.linspace(0.1, 3.0, d)
    return common + 0.5 * rng.standard_normal((K, d))


def test_chunks_cut_layers_into_pieces_that_keep_their_types():
    assert chunk_bounds(8, 3).tolist() == [0, 2, 5, 8]
    layout = LayerLayout([5, 3], types=[0, 1])
    Q = LayerwiseQuantizer(layout, (Levels.uniform(3), Levels.exponential(3)), bucket_size=(None, 2))
    P, chunk = piece_quantizer(Q, 8, 3)
    assert P.layout.sizes.tolist() == [2, 3, 3] and P.layout.types.tolist() == [0, 0, 1]
    assert chunk.tolist() == [0, 1, 2] and P.levels == Q.levels and P.bucket_size == (None, 2)
    # a chunk boundary inside a layer and a layer boundary inside a chunk
    P, chunk = piece_quantizer(LayerwiseQuantizer(LayerLayout([2, 6], types=[1, 0]), Levels.uniform(2)), 8, 2)
    assert P.layout.sizes.tolist() == [2, 2, 4] and P.layout.types.tolist() == [1, 0, 0]
    assert chunk.tolist() == [0, 0, 1]
    # a global quantizer gets one norm per chunk
    P, chunk = piece_quantizer(Quantizer(Levels.uniform(4), bucket_size=3), 10, 4)
    assert P.layout.sizes.tolist() == [2, 3, 2, 3] and chunk.tolist() == [0, 1, 2, 3]
    assert P.bucket_size == 3
    subs = chunk_quantizers(Quantizer(Levels.uniform(4)), 10, 4)
    assert [s.layout.d for s in subs] == [2, 3, 2, 3]


@pytest.mark.parametrize(
    ("call", "err", "match"),
    [
        (lambda: chunk_bounds(3, 4), ValueError, "d must be an integer >= K"),
        (lambda: chunk_bounds(8, 0), ValueError, "K must be >= 1"),
        (lambda: chunk_bounds(8, 2.0), TypeError, "K must be an integer"),
        (lambda: piece_quantizer(LayerwiseQuantizer(LayerLayout([4, 4]), Levels.uniform(2), scope="global"), 8, 2),
         ValueError, "per-layer norms"),
        (lambda: piece_quantizer(LayerwiseQuantizer(LayerLayout([4, 4]), Levels.uniform(2)), 9, 2), ValueError,
         "layout has d = 8"),
        (lambda: piece_quantizer("qsgd", 8, 2), TypeError, "quantizer must be"),
        (lambda: sra_aggregate(np.ones(8), Quantizer(Levels.uniform(2)), 0), ValueError, "V must be a"),
        (lambda: sra_aggregate(np.ones((2, 8), int), Quantizer(Levels.uniform(2)), 0), ValueError, "floating"),
        (lambda: sra_aggregate(np.full((2, 8), np.nan), Quantizer(Levels.uniform(2)), 0), ValueError, "finite"),
        (lambda: sra_aggregate(np.ones((2, 8)), Quantizer(Levels.uniform(2)), -1), ValueError, "seed"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_the_keys_of_both_stages():
    from qodasim.solvers.sra import stage1_key, stage2_key

    assert stage1_key(5, 2, 1, 3, 7) == Key(5, 7, 7) and stage2_key(5, 2, 7) == Key(stage2_seed(5), 2, 7)
    for call, err in [(lambda: stage1_key(5, 3, 0, 3, 0), ValueError),
                      (lambda: stage1_key(-1, 0, 0, 3, 0), ValueError),
                      (lambda: stage2_key(2**64, 0, 0), ValueError),
                      (lambda: stage2_key(1.5, 0, 0), TypeError)]:  # fmt: skip
        with pytest.raises(err):
            call()


def test_every_chunk_message_has_its_own_randomness():
    """Two identical chunks of one worker, and stage 2 of the same values, are rounded independently."""
    K, half = 2, 200
    v = np.tile(np.linspace(0.05, 1.0, half), 2)
    V = np.stack([v, v])
    r = sra_aggregate(V, Quantizer(Levels.uniform(2)), seed=3)
    assert not np.array_equal(r.stage1[0][0].indices, r.stage1[0][1].indices)  # worker 0's two chunks
    assert not np.array_equal(r.stage1[0][0].indices, r.stage1[1][0].indices)  # two workers' chunk 0
    assert stage2_seed(3) != 3 and stage2_seed(3) == stage2_seed(3)
    assert r.mean.shape == (2 * half,) and len(r.stage2) == K
    again = sra_aggregate(V, Quantizer(Levels.uniform(2)), seed=3)
    assert np.array_equal(again.aggregate, r.aggregate)  # explicit keys: the same draw


@pytest.mark.parametrize(
    "quant",
    [
        Quantizer(Levels.uniform(2), bucket_size=4),
        LayerwiseQuantizer(LayerLayout([7, 11, 12], types=[0, 1, 0]), (Levels.uniform(3), Levels.exponential(2))),
    ],
    ids=["global-buckets", "layerwise"],
)
def test_two_stage_aggregate_is_unbiased_with_the_exact_variance(quant):
    K, d, n = 3, 30, 1000
    V = _vectors(K, d, seed=1)
    gbar = V.mean(axis=0)
    agg = np.empty((n, d))
    err, pred, first = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        r = sra_aggregate(V, quant, seed=11, round=i)
        agg[i] = r.aggregate
        err[i] = np.sum((r.aggregate - gbar) ** 2)
        first[i] = np.sum((r.mean - gbar) ** 2)
        pred[i] = first[i] + sra_variance(V, quant, r.mean)["stage2"]
    # unbiased: every coordinate's mean within 4.5 SE (30 coordinates; SE from the draws)
    se = agg.std(axis=0, ddof=1) / np.sqrt(n)
    assert np.max(np.abs(agg.mean(axis=0) - gbar) / se) < 4.5
    # E‖Q_2(s) − ḡ‖² = E[‖s − ḡ‖² + E‖Q_2(s) − s‖²] (exact given s); 4 SE of the paired differences
    diff = err - pred
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / np.sqrt(n)
    # and stage 1 alone: E‖s − ḡ‖² = (1/K²) Σ_k E‖Q_1(g_k) − g_k‖²
    exact = sra_variance(V, quant)["stage1"]
    assert abs(first.mean() - exact) < 4 * first.std(ddof=1) / np.sqrt(n)
    # re-quantizing costs: the aggregate's variance exceeds stage 1's by the stage-2 term
    assert err.mean() > exact + 4 * diff.std(ddof=1) / np.sqrt(n)


def test_stage1_variance_is_the_piece_quantizers_and_allgather_the_unchunked_one():
    K, d = 4, 37
    V = _vectors(K, d, seed=2)
    quant = LayerwiseQuantizer(LayerLayout([10, 27], types=[0, 1]), (Levels.uniform(3), Levels.uniform(5)))
    P, _ = piece_quantizer(quant, d, K)
    v = sra_variance(V, quant, mean=V.mean(axis=0))
    assert v["stage1"] == pytest.approx(sum(P.exact_variance(V[k]) for k in range(K)) / K**2, rel=1e-12)
    assert v["allgather"] == pytest.approx(sum(quant.exact_variance(V[k]) for k in range(K)) / K**2, rel=1e-12)
    b = chunk_bounds(d, K)
    subs = chunk_quantizers(quant, d, K)
    s = V.mean(axis=0)
    assert v["stage2"] == pytest.approx(sum(subs[j].exact_variance(s[b[j] : b[j + 1]]) for j in range(K)), rel=1e-12)


def test_expected_chunk_bits_equal_the_mean_of_real_streams():
    K, d, n = 3, 60, 400
    V = _vectors(K, d, seed=4)
    quant = LayerwiseQuantizer(LayerLayout([20, 40], types=[0, 1]), (Levels.uniform(3), Levels.exponential(3)))
    r0 = sra_aggregate(V, quant, seed=5)
    bits = sra_bits(V, quant, r0.mean)
    assert bits["stage1"].shape == (K, K) and bits["stage2"].shape == (K,) and bits["allgather"].shape == (K,)
    subs = chunk_quantizers(quant, d, K)
    b = chunk_bounds(d, K)
    got1 = np.empty((n, K, K))
    got2 = np.empty((n, K))
    for i in range(n):
        r = sra_aggregate(V, quant, seed=5, round=i)
        for k in range(K):
            for j in range(K):
                got1[i, k, j] = Encoder().encode(r.stage1[k][j]).nbits
        for j in range(K):  # stage 2 of the fixed mean r0.mean, so that its expectation is bits["stage2"]
            q = subs[j].quantize(r0.mean[b[j] : b[j + 1]], Key(7, j, i))
            got2[i, j] = Encoder().encode(q).nbits
    se1 = got1.std(axis=0, ddof=1) / np.sqrt(n)
    se2 = got2.std(axis=0, ddof=1) / np.sqrt(n)
    assert np.max(np.abs(got1.mean(axis=0) - bits["stage1"]) / se1) < 4.5
    assert np.max(np.abs(got2.mean(axis=0) - bits["stage2"]) / se2) < 4.5


# ------------------------------------------------------------------------------ SRA inside the solver
def test_the_solvers_sra_oracle_is_sra_aggregate_and_its_ledger_the_chunk_streams():
    from qodasim.solvers import SolverConfig
    from qodasim.solvers.genx import _Oracle, _replica_seed
    from qodasim.vi import NoiseModel, layered_problem

    problem = layered_problem([10, 17, 9], [1.0, 0.1, 3.0], types=[0, 1, 0], seed=1)
    cfg = SolverConfig(method="qoda", K=3, T=5, compression="layerwise", levels=("uniform:3", "uniform:5"),
                       noise=NoiseModel("absolute", 0.3), collective="sra", replicas=2, seed=9)  # fmt: skip
    oracle = _Oracle(problem, cfg)
    X = np.random.default_rng(0).standard_normal((2, problem.d))
    for rnd in range(3):
        got, workers = oracle(X, 1 + rnd, rnd)
        V = cfg.noise.sample_at(problem, X, cfg.K, cfg.seed, rnd)
        assert workers is None
        for r in range(2):
            want = sra_aggregate(V[r], oracle.quant, _replica_seed(cfg.seed, r), rnd)
            assert np.array_equal(got[r], want.aggregate)
            if rnd == 0:  # fresh channels: every message carries its level tables
                bits = sum(Encoder().encode(want.stage1[k][j]).nbits for k in range(3) for j in range(3) if j != k)
                bits += sum(Encoder().encode(q).nbits for q in want.stage2)
                assert oracle.bits[r, 0] == bits
    rows = oracle.ledger.table()
    assert rows.shape[0] == 3 * 3 and sorted(set(rows[:, 0])) == [0, 1, 2]  # one row per worker and round
    assert oracle.ledger.total() == oracle.bits[0].sum()


def test_qoda_by_sra_converges_and_pays_for_the_requantization(run_solver):
    from qodasim.vi import NoiseModel, layered_problem

    problem = layered_problem([40, 60], [1.0, 0.2], types=[0, 1], seed=0)
    base = dict(method="qoda", K=4, T=400, compression="layerwise", levels="uniform:3", replicas=4,
                noise=NoiseModel("absolute", 0.1))  # fmt: skip
    ag = run_solver(problem, **base)
    sra = run_solver(problem, **base, collective="sra")
    assert sra.status == "ok"
    start, end = sra.measures["gap_avg"][:, 0], sra.measures["gap_avg"][:, -1]
    assert np.all(end < start / 2)
    # the re-quantization's variance costs progress per iteration: every replica ends above every
    # all-gather replica (same noise draws; 13.0–13.8 against 23.0–24.3 when written)
    assert end.min() > ag.measures["gap_avg"][:, -1].max()
    assert sra.config["collective"] == "sra" and ag.config["collective"] == "allgather"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"collective": "tree"}, "collective must be"),
        ({"collective": "sra", "compression": "none", "levels": "uniform:7"}, "needs compression"),
        ({"collective": "sra", "engine": "cuda"}, "host engines"),
        ({"collective": "sra", "bits": "expected"}, "bits must be 'stream' or 'none'"),
        ({"collective": "sra", "compression": "layerwise", "scope": "global"}, "scope 'layer'"),
        ({"collective": "sra", "step": {"rule": "adaptive", "per_worker": True}}, "per-worker"),
    ],
)
def test_sra_configs_that_cannot_run_are_refused(overrides, match):
    from qodasim.solvers import SolverConfig, SolverError

    base = {"method": "qoda", "K": 2, "T": 5, "compression": "global", "levels": "uniform:3"}
    with pytest.raises(SolverError, match=match):
        SolverConfig(**{**base, **overrides})


def test_the_aggregate_variance_never_exceeds_its_bound_under_either_collective():
    """The exact variances (stage 1, and stage 2 averaged over drawn means) sit below
    aggregate_variance_bound with the pieces' tight ε; the bound's SRA term is what makes it larger."""
    from qodasim.bounds import aggregate_variance_bound, layerwise_tight_bound

    K, d = 3, 40
    V = _vectors(K, d, seed=6)
    layout = LayerLayout([15, 25], types=[0, 1])
    levels = (Levels.uniform(3), Levels.exponential(3))
    quant = LayerwiseQuantizer(layout, levels)
    P, _ = piece_quantizer(quant, d, K)
    eps_pieces = layerwise_tight_bound(P.layout.sizes, P.layout.types, levels)
    eps_layers = layerwise_tight_bound(layout.sizes, layout.types, levels)
    sq = np.sum(V.astype(np.float64) ** 2, axis=1)
    gbar2 = float(np.sum(V.mean(axis=0) ** 2))
    exact = sra_variance(V, quant)
    assert exact["allgather"] <= aggregate_variance_bound(eps_layers, sq)
    second = np.mean([sra_variance(V, quant, sra_aggregate(V, quant, 1, i).mean)["stage2"] for i in range(200)])
    bound = aggregate_variance_bound(eps_pieces, sq, gbar2, "sra")
    assert exact["stage1"] + second <= bound
    for call, match in [(lambda: aggregate_variance_bound(-1, sq), "eps"),
                        (lambda: aggregate_variance_bound(1, []), "sq_norms"),
                        (lambda: aggregate_variance_bound(1, sq, -1.0, "sra"), "mean_sq_norm"),
                        (lambda: aggregate_variance_bound(1, sq, collective="ring"), "collective")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            call()
