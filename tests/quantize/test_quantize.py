"""Quantizer tests: conformance suite over quantizers × engines, kernels vs the NumPy reference,
thread/chunk invariance, layer-wise reductions and bad input."""

from __future__ import annotations

import re

import numba
import numpy as np
import pytest
from cases import LAYOUT, LEVELS, NUMPY_QUANTIZERS, QUANTIZERS

from qodasim import Key, LayerLayout, LayerwiseQuantizer, Levels, Quantizer
from qodasim.quantize import _numpy as ref
from qodasim.quantize import core, norms, validation
from qodasim.quantize import plan as plan_mod
from qodasim.quantize.check import (
    check_bad_input,
    check_dimension_one,
    check_output_format,
    check_quantizer,
    check_reproducible,
    check_unbiased,
    check_variance_matches_exact,
    check_zero_vector,
    test_vector,
)
from qodasim.quantize.core import compute_norms, get_engine, round_up_to_float32, segment_bases, segment_scales


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_conformance_numba(name):
    check_quantizer(QUANTIZERS[name])


@pytest.mark.parametrize("name", sorted(NUMPY_QUANTIZERS))
def test_conformance_numpy_engine(name):
    check_quantizer(NUMPY_QUANTIZERS[name], n=1000)


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_engines_agree_bitwise(name, dtype):
    qa, qb = QUANTIZERS[name], NUMPY_QUANTIZERS[name]
    v = test_vector(qa.dimension or 1000, 7, dtype)
    a, b = qa.quantize(v, Key(3, 1, 2)), qb.quantize(v, Key(3, 1, 2))
    q = a.plan.group_q
    if np.all((q == 2.0) | np.isinf(q)):
        assert a.equals(b)
    else:  # other q: NumPy's and LLVM's pow may differ in the last ulp
        assert np.allclose(a.norms, b.norms, rtol=1e-6)
    assert np.array_equal(a.dequantize(), b.dequantize(engine="numpy")) or not np.array_equal(a.norms, b.norms)
    assert np.isclose(qa.exact_variance(v), qb.exact_variance(v), rtol=1e-10)


def assert_kernel_matches_reference(quant, v, key):
    """The Numba kernel and a plain NumPy formula fed the same uniforms give identical output."""
    plan = quant.plan(v.size)
    n32 = round_up_to_float32(compute_norms(v, plan, get_engine("numba")))
    lv, lv_start, type_uni = quant._tables
    scale = segment_scales(plan, n32, type_uni)
    u = ref.coordinate_uniforms(plan, segment_bases(plan, key))
    idx_ref, sign_ref = ref.round_given_uniforms(v, scale, plan, lv, lv_start, type_uni, u, quant.index_dtype)
    qv = quant.quantize(v, key)
    assert np.array_equal(qv.indices, idx_ref) and np.array_equal(qv.signs, sign_ref)
    return plan, u


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_round_kernel_equals_reference_fed_same_uniforms(name):
    quant = QUANTIZERS[name]
    v = test_vector(quant.dimension or 3001, 8)
    key = Key(11, 2, 9)
    plan, u = assert_kernel_matches_reference(quant, v, key)
    # and the uniforms are the textbook SplitMix64 ones: spot-check against direct formula per coordinate
    layer, index = plan.coord_address()
    from qodasim.rng import stream_base, uniform_scalar_py

    for i in (0, v.size // 2, v.size - 1):
        assert u[i] == uniform_scalar_py(stream_base(key, int(layer[i])), int(index[i]))


def _awkward_vector(d: int, dtype, rng) -> np.ndarray:
    """Coordinates on levels, between adjacent floats, tiny, zero, negative zero and the maximum."""
    v = rng.standard_normal(d)
    v[::5] = np.round(v[::5] * 4) / 4
    v[1::7] *= 1e-30
    v[2::11] = 0.0
    v[3::13] = -0.0
    v[4] = np.abs(v).max() * 3
    if dtype == np.float64:
        v[6] = 1e38  # near the float32 limit of the norm, so that t = |x|·s/n of these is subnormal
        v[5::17] = 1e-280 * rng.uniform(0.5, 50.0, v[5::17].size)
    return v.astype(dtype)


@pytest.mark.parametrize("s", [1, 2, 15, 1023, 1024, 3000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_integer_path_matches_reference_at_its_boundaries(s, dtype):
    """Uniform s < 2^10 rounds in integers (``round_int``), larger s by the float compare: both = reference."""
    v = _awkward_vector(20_011, dtype, np.random.default_rng(s))
    for quant in (Quantizer(Levels.uniform(s)), Quantizer(Levels.uniform(s), q=np.inf, bucket_size=64)):
        assert_kernel_matches_reference(quant, v, Key(5, 1, s))


def test_round_int_identity_exact():
    """``(⌈t·2^53⌉ + 2^53 − 1 − K) >> 53 = ⌊t⌋ + [K·2^{-53} < t − ⌊t⌋]``, checked in exact rationals.

    K is put exactly on, just below and just above ``(t − ⌊t⌋)·2^53``, where an off-by-one would show
    (random K would hit these with probability ~2^-53)."""
    from fractions import Fraction

    from qodasim.quantize._numba import round_int

    rng = np.random.default_rng(0)
    ts = [0.0, 1.0, 5e-324, 2.0**-60, 0.5, 1023.0, np.nextafter(1023.0, 1024.0), np.nextafter(7.0, 0.0)]
    ts += list(rng.uniform(0, 1024, 40)) + list(rng.uniform(0, 1, 20) * 2.0 ** -rng.integers(0, 60, 20))
    top = (1 << 53) - 1
    n_checked = 0
    for t in ts:
        j = int(np.floor(t))
        r53 = (Fraction(t) - j) * (1 << 53)
        fl = int(r53)
        for K in {0, top, fl - 1, fl, fl + 1, int(rng.integers(0, top))}:
            if not 0 <= K <= top:
                continue
            for low in (0, (1 << 11) - 1):  # the 11 discarded bits must not matter
                h = np.uint64((K << 11) | low)
                want = j + (Fraction(K) < r53)
                assert int(round_int(t, h)) == want, (t, K, low)
                n_checked += 1
    assert n_checked > 400


def test_double_of_53_bits_is_the_exact_conversion():
    """The bit-level conversion equals ``float(k)`` on the edges of its two halves and at random."""
    from numba import njit

    from qodasim.quantize._numba import double_of_53_bits

    f = njit(lambda k: double_of_53_bits(k))
    rng = np.random.default_rng(53)
    edges = [0, 1, 2**32 - 1, 2**32, 2**32 + 1, 2**52, 2**53 - 1, 2**53 - 2**32, (2**21 - 1) << 32]
    for k in edges + [int(x) for x in rng.integers(0, 2**53, 2000)]:
        assert f(np.uint64(k)) == float(k), k


def test_uniform_avx2_equals_uniform_of():
    """The uniform without AVX-512DQ is :func:`uniform_of`'s double for states along a stream."""
    from numba import njit

    from qodasim.quantize._numba import _GOLDEN, uniform_avx2, uniform_of

    @njit
    def both(z, n):
        out = np.empty((n, 2))
        for i in range(n):
            out[i, 0], out[i, 1] = uniform_of(z), uniform_avx2(z)
            z += _GOLDEN
        return out

    for z in (0, 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15):
        out = both(np.uint64(z), 5000)
        assert np.array_equal(out[:, 0], out[:, 1]) and out.min() >= 0.0 and out.max() < 1.0


@pytest.mark.parametrize("s", [1, 2, 15, 255, 1023])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_avx2_rounding_equals_the_integer_path(s, dtype):
    """:func:`_round_uniform_avx2` (what a CPU without AVX-512DQ runs) writes the same indices and signs
    as :func:`_round_uniform_int` (the AVX-512 path), both called directly on this CPU: scales that put
    the largest coordinate exactly on ``s``, one ulp above it, ``s + 0.75`` (``t > s``: the clamp) and
    the L2 one;
    zeros, negative zeros, tiny and huge coordinates; an odd start and length."""
    from qodasim.quantize import _numba as K

    v = _awkward_vector(20_011, dtype, np.random.default_rng(s))
    top = float(np.abs(v).max())
    idx_dtype = np.uint8 if s < 256 else np.uint16
    scales = (s / top, np.nextafter(s / top, np.inf), s / top * (1 + 2**-40), (s + 0.75) / top)
    for c in scales + (s / np.linalg.norm(v.astype(float)),):
        outs = []
        for f in (K._round_uniform_int, K._round_uniform_avx2):
            idx, sign = np.full(v.size, 7, idx_dtype), np.full(v.size, 5, np.int8)
            f(v, 3, v.size - 2, c, np.uint64(s), np.uint64(0x1234567), idx, sign)
            outs.append((idx, sign))
        assert np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1]), c
        assert outs[0][0][3:-2].max() == s or c < s / top  # the written range reaches s


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_quantize_into_preallocated_output(engine):
    quant = Quantizer(Levels.uniform(15), bucket_size=100, engine=engine)
    v = test_vector(5000, 3)
    out = (np.full(v.size, 99, quant.index_dtype), np.zeros(v.size, np.int8))
    qv = quant.quantize(v, Key(4), out=out)
    assert qv.indices is out[0] and qv.signs is out[1]
    assert qv.equals(quant.quantize(v, Key(4)))
    views = (np.zeros(v.size, np.uint8), np.zeros(v.size, np.int8).view(np.uint8).view(np.int8))
    quant.quantize(v, Key(4), out=views)  # views of other arrays are accepted


@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda d: np.empty(d, np.uint8), TypeError, "pair"),
        (lambda d: (np.empty(d, np.uint16), np.empty(d, np.int8)), TypeError, "dtype uint8"),
        (lambda d: (np.empty(d, np.uint8), np.empty(d, np.int16)), TypeError, "dtype int8"),
        (lambda d: (np.empty(d + 1, np.uint8), np.empty(d, np.int8)), ValueError, "shape"),
        (lambda d: (np.empty(2 * d, np.uint8)[::2], np.empty(d, np.int8)), ValueError, "contiguous"),
        (lambda d: ([0] * d, np.empty(d, np.int8)), TypeError, "numpy array"),
    ],
)
def test_bad_preallocated_output(make, exc, words):
    quant = Quantizer(Levels.uniform(15))
    v = test_vector(100, 2)
    with pytest.raises(exc, match=words):
        quant.quantize(v, Key(1), out=make(v.size))


def test_preallocated_output_read_only_or_overlapping_is_rejected():
    quant = Quantizer(Levels.uniform(15))
    v = test_vector(100, 2)
    idx, sign = np.empty(v.size, np.uint8), np.empty(v.size, np.int8)
    idx.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        quant.quantize(v, Key(1), out=(idx, sign))
    both = np.empty(v.size + 1, np.uint8)
    with pytest.raises(ValueError, match="overlap"):
        quant.quantize(v, Key(1), out=(both[:-1], both[1:].view(np.int8)))
    raw = np.empty(v.size * 4, np.uint8)
    w = raw.view(np.float32)
    w[:] = v
    with pytest.raises(ValueError, match="overlaps the input"):
        quant.quantize(w, Key(1), out=(raw[: v.size], np.empty(v.size, np.int8)))


def test_norms_against_numpy_norm():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(50_000)
    for q in (1.0, 2.0, 3.5, np.inf):
        n = Quantizer(Levels.uniform(3), q=q).norms(v)
        exact = np.linalg.norm(v, ord=q)
        assert n.dtype == np.float32 and n[0] >= exact and n[0] <= np.nextafter(np.float32(exact), np.inf)


def test_norm_extreme_magnitudes_no_overflow():
    for scale in (1e-200, 1e-160, 1e160, 1e30, 1e-37):
        v = np.array([3.0, -4.0, 0.0]) * scale
        if scale > 1e38 / 5 or scale < 1e-38:  # outside the float32 normal range: refused (THEORY §1)
            with pytest.raises(ValueError, match="float32"):
                Quantizer(Levels.uniform(2)).quantize(v, 0)
            continue
        n = Quantizer(Levels.uniform(2)).norms(v)[0]
        assert np.isclose(n, 5.0 * scale, rtol=1e-7) or (n > 0 and 5.0 * scale < 1e-44)


def test_norm_rounded_up_makes_ratios_at_most_one():
    """Norms are sent as float32 and rounded up, so max r_i ≤ 1 and Q stays unbiased."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        v = rng.standard_normal(rng.integers(1, 50))
        n32 = Quantizer(Levels.uniform(4)).norms(v)
        assert float(n32[0]) >= np.max(np.abs(v))


@pytest.mark.parametrize("name", ["global-uniform15-Linf", "layer-scope-buckets-mixed-q", "global-exp3-L2-bucket16"])
def test_thread_count_invariance(name):
    quant = QUANTIZERS[name]
    v = test_vector(quant.dimension or 200_001, 12, np.float32)
    before = numba.get_num_threads()
    try:
        outs = []
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            outs.append(quant.quantize(v, Key(5)))
    finally:
        numba.set_num_threads(before)
    assert all(o.equals(outs[0]) for o in outs)


def test_rounding_invariant_to_chunking(monkeypatch):
    """Task size (chunking) changes no rounding decision: randomness is addressed per coordinate."""
    quant = Quantizer(Levels.exponential(4), bucket_size=5000)
    v = test_vector(70_000, 13)
    a = quant.quantize(v, Key(2))
    for chunk in (1, 7, 1000):
        monkeypatch.setattr(plan_mod, "CHUNK", chunk)
        p = plan_mod.build_plan(plan_mod.PlanSpec(LayerLayout.single(v.size), "global", (2.0,), (0,), 5000))
        assert p.task_start.size > a.plan.task_start.size
        lv, lv_start, type_uni = quant._tables
        idx, sign = get_engine("numba").round(
            v, segment_scales(p, a.norms, type_uni), p, segment_bases(p, Key(2)), lv, lv_start, type_uni, np.uint8
        )
        assert np.array_equal(idx, a.indices) and np.array_equal(sign, a.signs)


def test_m1_layerwise_global_scope_equals_global_quantizer():
    """M = 1 reduces to the global quantizer exactly (same layout addresses, one norm)."""
    layout = LayerLayout([10, 25, 3, 60])
    v = test_vector(layout.d, 14)
    for lv in (LEVELS["uniform4"], LEVELS["random5"]):
        lw = LayerwiseQuantizer(layout, lv, scope="global")
        g = Quantizer(lv)
        assert lw.quantize(v, Key(1)).equals(g.quantize(v, Key(1), layout=layout))
        assert np.isclose(lw.exact_variance(v), g.exact_variance(v), rtol=1e-12)
    # and one layer is literally the global quantizer with its default layout
    one = LayerwiseQuantizer(LayerLayout([v.size]), LEVELS["exp3"], scope="global")
    assert one.quantize(v, Key(3)).equals(Quantizer(LEVELS["exp3"]).quantize(v, Key(3)))


def test_layer_scope_equals_separate_global_quantizers():
    """Per-layer scope = each layer quantized on its own with its type's levels (same addresses)."""
    lv = (LEVELS["uniform4"], LEVELS["exp3"], LEVELS["random5"])
    lw = LayerwiseQuantizer(LAYOUT, lv, scope="layer")
    v = test_vector(LAYOUT.d, 15)
    out = lw.quantize(v, Key(8)).dequantize()
    from qodasim.rng import stream_base

    for layer in range(LAYOUT.n_layers):
        sl = LAYOUT.layer_slice(layer)
        g = Quantizer(lv[LAYOUT.types[layer]])
        # a one-layer quantization at address `layer` is what the layer-wise quantizer does
        layout = LayerLayout([sl.stop - sl.start])
        p = g.plan(layout.d, layout)
        n32 = g.norms(v[sl])
        lvt, lst, tu = g._tables
        base = np.array([stream_base(Key(8), layer)], np.uint64)
        idx, sign = get_engine("numba").round(v[sl], segment_scales(p, n32, tu), p, base, lvt, lst, tu, np.uint8)
        expect = n32[0].astype(np.float64) * sign * lvt[idx]
        assert np.array_equal(out[sl], expect)
    assert np.isclose(
        lw.exact_variance(v),
        sum(Quantizer(lv[LAYOUT.types[i]]).exact_variance(v[LAYOUT.layer_slice(i)]) for i in range(LAYOUT.n_layers)),
        rtol=1e-12,
    )


def test_uniform_fast_path_matches_general_levels():
    """Uniform levels use t = s·r; the same levels perturbed by one ulp take the general path.

    Both are unbiased with the same exact variance (to rounding)."""
    s = 6
    uni = Levels.uniform(s)
    vals = uni.values.copy()
    vals[3] = np.nextafter(vals[3], 1.0)
    gen = Levels(vals)
    assert uni.uniform_s == s and gen.uniform_s == 0
    v = test_vector(500, 16)
    assert np.isclose(Quantizer(uni).exact_variance(v), Quantizer(gen).exact_variance(v), rtol=1e-9)
    check_unbiased(Quantizer(gen))


def test_exact_variance_closed_form_small_case():
    """v = (3, 4): r = (0.6, 0.8); uniform s=2 → φ = (1−.6)(.6−.5) + (1−.8)(.8−.5) = 0.1; E‖Q−v‖² = 25·0.1."""
    var = Quantizer(Levels.uniform(2)).exact_variance(np.array([3.0, 4.0]))
    assert np.isclose(var, 2.5, rtol=1e-12)
    assert np.isclose(Quantizer(Levels.uniform(2)).exact_variance(np.array([3.0, 4.0]), normalized=True), 0.1)


def test_checker_catches_a_biased_quantizer():
    """The conformance checks can fail: deterministic nearest rounding is biased."""

    class Nearest(Quantizer):
        def quantize(self, v, key, layout=None):
            qv = super().quantize(v, key, layout)
            j, rho, _, _ = self.intervals(v, layout)
            idx = (j + (rho >= 0.5)).astype(qv.indices.dtype)
            signs = np.where((np.asarray(v) < 0) & (idx > 0), -1, 1).astype(np.int8)
            return type(qv)(idx, signs, qv.norms, qv.plan, qv.levels, qv.dtype, qv.key)

    bad = Nearest(Levels.uniform(3))
    with pytest.raises(AssertionError, match="unbiasedness"):
        check_unbiased(bad, n=500)
    with pytest.raises(AssertionError, match="variance"):
        check_variance_matches_exact(bad, n=500)
    with pytest.raises(AssertionError, match="another round"):
        check_reproducible(bad)


def test_checker_catches_wrong_variance_formula():
    class WrongVariance(Quantizer):
        def exact_variance(self, v, layout=None, normalized=False):
            return 0.9 * super().exact_variance(v, layout, normalized)

    with pytest.raises(AssertionError):
        check_variance_matches_exact(WrongVariance(Levels.uniform(3)))


def test_other_checks_run_on_each_quantizer(quantizer):
    check_output_format(quantizer)
    check_zero_vector(quantizer)
    check_dimension_one(quantizer)
    check_bad_input(quantizer)


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(levels=[0, 0.5, 1]), TypeError, "Levels"),
        (dict(levels=Levels.uniform(2), q=0.5), ValueError, "q must be >= 1"),
        (dict(levels=Levels.uniform(2), q=np.nan), ValueError, "q must"),
        (dict(levels=Levels.uniform(2), q="two"), TypeError, "q must"),
        (dict(levels=Levels.uniform(2), bucket_size=0), ValueError, "bucket_size"),
        (dict(levels=Levels.uniform(2), bucket_size=2.5), ValueError, "bucket_size"),
        (dict(levels=Levels.uniform(2), engine="torch"), ValueError, "engine"),
    ],
)
def test_bad_quantizer_config(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        Quantizer(**kwargs)


def test_bad_layerwise_config():
    lv = (Levels.uniform(2), Levels.uniform(3), Levels.uniform(4))
    with pytest.raises(ValueError, match="3 types"):
        LayerwiseQuantizer(LAYOUT, lv[:2])
    with pytest.raises(ValueError, match="scope"):
        LayerwiseQuantizer(LAYOUT, lv, scope="bucket")
    with pytest.raises(ValueError, match="bucket_size needs scope='layer'"):
        LayerwiseQuantizer(LAYOUT, lv, scope="global", bucket_size=4)
    with pytest.raises(ValueError, match="same norm order"):
        LayerwiseQuantizer(LAYOUT, lv, scope="global", q=(2.0, 1.0, 2.0))
    with pytest.raises(TypeError, match="LayerLayout"):
        LayerwiseQuantizer([3, 4], lv)
    with pytest.raises(ValueError, match="length"):
        Quantizer(Levels.uniform(2)).quantize(np.ones(5), 0, layout=LayerLayout([2, 2]))


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(sizes=[]), ValueError),
        (dict(sizes=[3, 0]), ValueError),
        (dict(sizes=[3, 2], types=[0]), ValueError),
        (dict(sizes=[3, 2], types=[0, -1]), ValueError),
        (dict(sizes=[2.5]), TypeError),
        (dict(sizes=[[2, 3]]), ValueError),
        (dict(sizes=[3, 2], names=("a",)), ValueError),
        (dict(sizes=[3, 2], types=[0, 3], n_types=2), ValueError),
    ],
)
def test_bad_layout(kwargs, exc):
    with pytest.raises(exc):
        LayerLayout(**kwargs)


def test_lists_are_accepted_as_float64():
    qv = Quantizer(Levels.uniform(2)).quantize([1.0, -2.0, 0.5], 0)
    assert qv.dtype == np.float64 and qv.signs.tolist() == [1, -1, 1]


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_batch_quantize_equals_rows(name):
    from qodasim.quantize import dequantize_batch

    quant = QUANTIZERS[name]
    d = quant.dimension or 2500
    V = np.stack([test_vector(d, s) for s in range(5)])
    keys = [Key(3, k, 7) for k in range(5)]
    batch = quant.quantize_batch(V, keys)
    for b in range(5):
        assert batch[b].equals(quant.quantize(V[b], keys[b]))
    assert np.array_equal(dequantize_batch(batch), np.stack([q.dequantize(np.float64) for q in batch]))
    with pytest.raises(ValueError, match="keys"):
        quant.quantize_batch(V, keys[:2])
    with pytest.raises(ValueError, match="2-D"):
        quant.quantize_batch(V[0], keys[:1])
    bad = V.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        quant.quantize_batch(bad, keys)


def _summed_in_worker_order(qvs, K):
    """The reference of :func:`dequantize_sum`: each vector dequantized on its own, added in worker order."""
    D = np.stack([q.dequantize(np.float64) for q in qvs])
    D = D.reshape(len(qvs) // K, K, -1)
    out = D[:, 0].copy()
    for k in range(1, K):
        out += D[:, k]
    return out


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_dequantize_sum_equals_the_workers_dequantized_and_added_in_order(name):
    """The one-pass sum is bit for bit the dequantized vectors added in worker order (the solver's
    aggregation), for batches of R rows of K workers, on multi-task plans (parallel kernel) and
    one-task plans (serial twin), float32 and float64 input, rows of very different scales."""
    from qodasim.quantize import dequantize_sum

    quant = QUANTIZERS[name]
    rng = np.random.default_rng(11)
    for d, R, K, dtype in (
        (quant.dimension or 40_000, 2, 5, np.float64),
        (quant.dimension or 37, 3, 4, np.float32),
        (quant.dimension or 1000, 1, 16, np.float64),
        (quant.dimension or 999, 4, 1, np.float32),
    ):
        V = np.stack([test_vector(d, int(s), dtype) * dtype(10.0 ** rng.uniform(-3, 3)) for s in range(R * K)])
        qvs = quant.quantize_batch(V, [Key(5, k, 2) for k in range(R * K)])
        got = dequantize_sum(qvs, K)
        want = _summed_in_worker_order(qvs, K)
        assert got.shape == (R, d) and got.dtype == np.float64
        assert np.array_equal(got.view(np.int64), want.view(np.int64)), (d, R, K)


def test_dequantize_sum_of_vectors_on_different_plans_and_bad_input():
    from qodasim.quantize import dequantize_sum

    a = Quantizer(Levels.uniform(3)).quantize(test_vector(300, 1), Key(1))
    b = Quantizer(Levels.exponential(5)).quantize(test_vector(300, 2), Key(2))
    c = Quantizer(Levels.uniform(3), bucket_size=64).quantize(test_vector(300, 3), Key(3))
    for qvs, K in (([a, b, c, a], 2), ([a, b, c], 3), ([b, a], 1)):  # different levels or plans: composed
        assert np.array_equal(dequantize_sum(qvs, K).view(np.int64), _summed_in_worker_order(qvs, K).view(np.int64))
    for workers, err in ((0, ValueError), (-2, ValueError), (True, TypeError), (2.0, TypeError), ("2", TypeError)):
        with pytest.raises(err, match="workers"):
            dequantize_sum([a, a], workers)
    with pytest.raises(ValueError, match="multiple of workers"):
        dequantize_sum([a, a, a], 2)
    with pytest.raises(ValueError, match="multiple of workers"):
        dequantize_sum([], 1)
    with pytest.raises(TypeError, match="QuantizedVector"):
        dequantize_sum([a, np.zeros(300)], 2)
    other_d = Quantizer(Levels.uniform(3)).quantize(test_vector(301, 4), Key(4))
    for combine in (lambda: dequantize_sum([a, other_d], 2), lambda: core.dequantize_batch([a, other_d])):
        with pytest.raises(ValueError, match="one dimension"):
            combine()


def test_trusted_vectors_are_the_constructed_ones_marked_checked():
    """``QuantizedVector._trusted`` fills ``__dict__`` directly (the per-call cost of small vectors):
    the same fields, objects and attribute set as the dataclass's ``__init__``, plus ``_checked``."""
    import dataclasses
    import pickle

    from qodasim.quantize.core import QuantizedVector

    key = Key(2**64 - 1, 3, 2**40)
    for v in (test_vector(16, 1, np.float32), test_vector(5000, 2)):  # the one-call path and the general one
        qv = Quantizer(Levels.exponential(6)).quantize(v, key)
        built = QuantizedVector(*(getattr(qv, f.name) for f in dataclasses.fields(QuantizedVector) if f.init))
        assert set(vars(qv)) == set(vars(built)) | {"_checked"} and qv._checked and not built._checked
        assert all(getattr(qv, f.name) is getattr(built, f.name) for f in dataclasses.fields(QuantizedVector) if f.init)
        assert not dataclasses.replace(qv)._checked  # a copy made by hand is validated again
    assert key._words == (np.uint64(2**64 - 1), np.uint64(3), np.uint64(2**40))
    assert all(type(w) is np.uint64 for w in key._words)
    again = pickle.loads(pickle.dumps(key))
    assert again == key and hash(again) == hash(key) and again._words == key._words
    assert key.with_round(5)._words[2] == np.uint64(5)


def test_cuda_engine_unavailable_gives_a_clear_message():
    from qodasim.quantize.core import cuda_available

    if cuda_available():
        pytest.skip("a GPU (or the CUDA simulator) is available here")
    with pytest.raises(ValueError, match="NUMBA_ENABLE_CUDASIM"):
        Quantizer(Levels.uniform(2), engine="cuda")


def test_serial_twins_equal_the_parallel_kernels():
    """The serial kernels used for single-task plans (no thread-pool wake-up) are the parallel ones'
    code: on a plan of several tasks both give identical partials, indices and signs."""
    from qodasim.quantize import _numba as K
    from qodasim.quantize import _numba_engine as E
    from qodasim.quantize.core import segment_bases, segment_scales

    q = Quantizer(LEVELS["random5"], q=3.0, bucket_size=1000)
    v = np.random.default_rng(4).standard_normal(5003)
    plan = q.plan(v.size)
    assert plan.task_start.size > 1 and E._k(q.plan(7), "round_kernel") is K.SERIAL["round_kernel"]
    n = plan.task_start.size
    outs = []
    for kernels in ({name: getattr(K, name) for name in K.SERIAL}, K.SERIAL):
        mx, ss, pw = np.empty(n), np.empty(n), np.empty(n)
        kernels["task_max_sumsq"](v, plan.task_start, plan.task_end, mx, ss)
        tg = plan.seg_group[plan.task_seg]
        g = np.ones(plan.n_groups)
        kernels["task_scaled_powsum"](v, plan.task_start, plan.task_end, tg, g, np.full(plan.n_groups, 3.0),
                                      np.ones(plan.n_groups, bool), pw)  # fmt: skip
        lv, lv_start, type_uni = q._tables
        scale = segment_scales(plan, np.ones(plan.n_groups, np.float32), type_uni)
        idx, sign = np.empty(v.size, np.uint8), np.empty(v.size, np.int8)
        bases = segment_bases(plan, Key(3))
        tables = q._engine_buckets(get_engine("numba"))
        kernels["round_kernel"](v, scale, plan.seg_type, bases, plan.seg_shift, plan.task_start, plan.task_end,
                                plan.task_seg, lv, lv_start, type_uni, *tables, idx, sign)  # fmt: skip
        outs.append((mx, ss, pw, idx, sign))
    for a, b in zip(*outs):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("q", [2.0, np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_vector_fast_path_equals_the_general_path(q, dtype):
    """``quantize(v, key)`` on a single-task plan takes the fused one-call path; passing the layout
    explicitly takes the general path.  Both must agree bit for bit on random and edge vectors, and
    the cases the fast path declines (tiny, huge, zero, NaN) must behave exactly as before."""
    from qodasim.quantize import _numba as K

    assert (K._SAFE_LO, K._SAFE_HI) == (norms._SAFE_LO, norms._SAFE_HI) and K._F32_TINY == validation.F32_TINY
    rng = np.random.default_rng(int(q == 2.0) + 2 * (dtype == np.float32))
    Q = Quantizer(LEVELS["random5"], q=q)
    U = Quantizer(LEVELS["uniform15"], q=q, bucket_size=4096)
    cases = [rng.standard_normal(d) * 10.0 ** rng.uniform(-5, 5) for d in (1, 2, 31, 32, 33, 215, 4096)]
    cases += [np.zeros(17), np.full(9, 0.25), 1e-160 * rng.standard_normal(40), 1e160 * rng.standard_normal(40),
              np.array([3.0, -4.0]), np.array([1e-45, 0.0])]  # fmt: skip
    for v in cases:
        with np.errstate(over="ignore"):  # 1e160 overflows float32 to Inf: the error path is tested too
            v = v.astype(dtype)
        for quant in (Q, U):
            layout = LayerLayout.single(v.size)
            try:
                want = quant.quantize(v, Key(5, 1, 2), layout)
            except ValueError as exc:  # NormRangeError included: the fast path must raise the same
                with pytest.raises(type(exc), match=re.escape(str(exc))):
                    quant.quantize(v, Key(5, 1, 2))
                continue
            got = quant.quantize(v, Key(5, 1, 2))
            assert got.equals(want), (v.size, v.dtype)
            out = (np.empty(v.size, quant.index_dtype), np.empty(v.size, np.int8))
            assert quant.quantize(v, Key(5, 1, 2), out=out).equals(want) and out[0] is not None
    bad = np.ones(10, dtype)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        Q.quantize(bad, Key(1))


@pytest.mark.parametrize(
    "levels",
    [LEVELS["exp3"], LEVELS["random5"], Levels.exponential(14), Levels.exponential(20, 0.6),
     Levels.from_interior(np.sort(np.random.default_rng(3).uniform(0, 1, 300)), name="dense300")],
    ids=["exp3", "random5", "exp14", "exp20-0.6", "dense300"],
)  # fmt: skip
def test_bucket_table_rounding_equals_the_binary_search(levels):
    """Long tasks of non-uniform levels find intervals through a bucket table (one comparison); the
    result must be the binary search's bit for bit — checked against the NumPy reference on ratios
    placed exactly on levels, one ulp either side, on bucket boundaries, at 0 and 1 (q = ∞ and a
    maximum of 1 make ``r = |v_i|`` exactly)."""
    from qodasim.quantize import _numba as K

    table, G = K.bucket_table(levels.values, 0, levels.size)
    rng = np.random.default_rng(levels.size)
    lv = levels.values
    pool = [lv, np.nextafter(lv, 0.0), np.nextafter(lv, 1.0), rng.uniform(0, 1, 3000)]
    if G:
        pool.append(np.arange(G + 1) / G)
        pool.append(np.nextafter(np.arange(G + 1) / G, 0.0))
    r = np.clip(np.concatenate(pool), 0.0, 1.0)
    size = max(3 * K.TABLE_BLOCK, r.size) + 77  # several blocks of the table kernel and a partial one
    v = rng.choice(r, size=size) * rng.choice([-1.0, 1.0], size=size)
    v[0] = 1.0
    Q, R = Quantizer(levels, q=np.inf), Quantizer(levels, q=np.inf, engine="numpy")
    a, b = Q.quantize(v, Key(8)), R.quantize(v, Key(8))
    assert a.norms[0] == 1.0 and a.equals(b)
    if levels.size <= 16:  # the table exists for these (closest levels ≥ 2^-15 apart)
        assert G > 0 and np.all(np.diff(table) <= 1)


def test_bucket_tables_once_per_quantizer_equal_the_per_type_tables_and_any_cap():
    """The tables a quantizer builds once (``bucket_tables``) are each type's :func:`bucket_table` at
    its offset (none for uniform types); with a cap on their total size the types past it search —
    the indices and signs of a layer-wise quantization are the same with every cap."""
    from qodasim.quantize import _numba as K
    from qodasim.quantize.core import segment_bases, segment_scales

    types = [LEVELS["exp3"], Levels.uniform(7), LEVELS["random5"], Levels.exponential(14), LEVELS["exp6_p0.3"]]
    sizes = [700, 2600, 1300, 3000, 5000, 900, 4100]
    layout = LayerLayout(sizes, types=[0, 1, 2, 3, 4, 3, 2])
    q = LayerwiseQuantizer(layout, types)
    lv, lv_start, type_uni = q._tables
    bt, bt_start, bt_G = q._engine_buckets(get_engine("numba"))
    assert bt_start[0] == 0 and bt_start[-1] == bt.size
    for m in range(len(types)):
        table, G = K.bucket_table(lv, lv_start[m], lv_start[m + 1] - lv_start[m])
        if type_uni[m]:
            assert bt_G[m] == 0 and bt_start[m + 1] == bt_start[m]
        else:
            assert bt_G[m] == G > 0 and np.array_equal(bt[bt_start[m] : bt_start[m + 1]], table)
    v = np.random.default_rng(9).standard_normal(sum(sizes))
    plan = q.plan(v.size)
    scale = segment_scales(plan, q.norms(v), type_uni)
    bases = segment_bases(plan, Key(2))
    outs = []
    for cap in (bt.size, bt.size - 1, int(bt_G.max()) + 1, 0):
        tables = K.bucket_tables(lv, lv_start, type_uni, cap)
        assert tables[0].size <= cap and (cap < bt.size) == (np.count_nonzero(tables[2]) < np.count_nonzero(bt_G))
        idx, sign = np.empty(v.size, np.uint8), np.empty(v.size, np.int8)
        K.round_kernel(v, scale, plan.seg_type, bases, plan.seg_shift, plan.task_start, plan.task_end,
                       plan.task_seg, lv, lv_start, type_uni, *tables, idx, sign)  # fmt: skip
        outs.append((idx, sign))
    want = LayerwiseQuantizer(layout, types, engine="numpy").quantize(v, Key(2))  # the NumPy reference
    assert q.quantize(v, Key(2)).equals(want)
    for idx, sign in outs:
        assert np.array_equal(idx, want.indices) and np.array_equal(sign, want.signs)


@pytest.mark.parametrize("variant", ["native", "lanes", "avx2"])
def test_vector_search_equals_split_for_every_level_count(variant):
    """:func:`_simd.search16` (as compiled for this CPU), its per-lane fallback and its AVX2 version give
    :func:`split`'s interval ``j`` and the levels ``ℓ_j, ℓ_{j+1}`` bit for bit, for every level count
    3..16 — random levels, levels one ulp apart, exponential ones — on ratios on the levels, one ulp
    either side, at 0 and 1, and random; for lengths that are and are not multiples of the group."""
    from numba import njit

    from qodasim.quantize import _numba as K
    from qodasim.quantize import _simd

    search = {"native": _simd.search16, "lanes": _simd.search16_generic, "avx2": _simd.search16_avx2}[variant]

    g = _simd.GROUP

    @njit
    def run(rr, S, V, n):
        m = (n + g - 1) // g * g
        jj, l0, l1 = np.empty(m, np.uint64), np.empty(m), np.empty(m)
        search(rr, S, V, jj, l0, l1, n)
        return jj[:n], l0[:n], l1[:n]

    @njit
    def reference(rr, lv, nl):
        out = np.empty((rr.size, 3))
        for i in range(rr.size):
            j, _ = K.split(rr[i], 1.0, 0, lv, 0, nl)
            out[i, 0], out[i, 1], out[i, 2] = j, lv[j], lv[j + 1]
        return out

    rng = np.random.default_rng(16)
    for nl in range(3, 17):
        interior = np.sort(rng.uniform(0, 1, nl - 2))
        close = 0.5 + np.arange(1, nl - 1) * np.spacing(0.5)  # levels one ulp apart
        for lv in (np.r_[0.0, interior, 1.0], np.r_[0.0, close, 1.0], 0.5 ** np.arange(nl - 1, -1, -1.0)):
            lv = np.unique(lv)
            lv[0] = 0.0
            assert lv.size == nl and lv[-1] == 1.0
            S = np.full(16, np.inf)
            S[: nl - 1] = lv[: nl - 1]
            V = np.zeros(16)
            V[:nl] = lv
            pool = np.r_[lv, np.nextafter(lv, 0.0), np.nextafter(lv, 2.0), rng.uniform(0, 1, 200), 0.0, 1.0]
            pool = np.clip(pool, 0.0, 1.0)
            want = reference(pool, lv, nl)
            for n in (pool.size, pool.size - 3, pool.size - 9, 5):
                rr = np.zeros((n + g - 1) // g * g)
                rr[:n] = pool[:n]
                jj, l0, l1 = run(rr, S, V, n)
                got = np.stack([jj.astype(np.float64), l0, l1], axis=1)
                assert np.array_equal(got, want[:n]), (nl, n)


@pytest.mark.slow
def test_non_avx512_target_takes_the_per_lane_search_with_the_same_indices(tmp_path):
    """Compiled for a CPU without AVX-512 (``NUMBA_CPU_NAME=haswell`` and its feature list, a fresh
    cache), the vector search takes its AVX2 permutes and the uniform rounding its AVX2 form (no zmm
    code, no scalar float → int conversion), and the quantizer's indices for ≤ 16 and > 16 non-uniform
    levels and for uniform ones equal the NumPy engine's (and so the AVX-512 build's)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "probe.py"
    script.write_text(
        "import numpy as np\n"
        "from qodasim import Key, Levels, Quantizer\n"
        "from qodasim.quantize import _numba as K\n"
        "v = np.random.default_rng(3).standard_normal(70001).astype(np.float32)\n"
        "for lv in (Levels.exponential(14), Levels.exponential(6, 0.3), Levels.exponential(20, 0.6),\n"
        "           Levels.uniform(15), Levels.uniform(1023)):\n"
        "    a = Quantizer(lv).quantize(v, Key(4))\n"
        "    b = Quantizer(lv, engine='numpy').quantize(v, Key(4))\n"
        "    assert a.equals(b), lv.name\n"
        "asm = '\\n'.join(K._round_table_range.inspect_asm().values())\n"
        "assert 'zmm' not in asm and 'vpermt2pd' not in asm and 'vpermi2pd' not in asm\n"
        "assert 'vpermps' in asm or 'vpermd' in asm  # the AVX2 search (LLVM may pick the integer form)\n"
        "from numba import njit\n"
        "from qodasim.quantize import _simd\n"
        "assert not njit(lambda: _simd.target_has_avx512dq())()  # so _round_uniform_range takes the AVX2 form\n"
        "asm = '\\n'.join(K._round_uniform_avx2.inspect_asm().values())\n"
        "assert 'zmm' not in asm and 'vcvttpd2dq' in asm and 'vpmuludq' in asm  # packed conversion, vector hash\n"
        "print('ok')\n"
    )
    features = "+64bit,+avx,+avx2,+bmi,+bmi2,+cx16,+f16c,+fma,+lzcnt,+movbe,+popcnt,+sse,+sse2,+sse3,+sse4.1,"
    features += "+sse4.2,+ssse3"
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=features,
               NUMBA_CACHE_DIR=str(tmp_path / "cache"))  # fmt: skip
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_table_split_equals_split_exactly():
    """``(j, ρ)`` of the bucket-table lookup equal :func:`split`'s on every crafted ratio (levels, one
    ulp either side, bucket boundaries, 0, 1, above 1) for several scales ``c``."""
    from numba import njit

    from qodasim.quantize import _numba as K

    @njit
    def both(r, c, lv, nl, table, G):
        out = np.empty((r.size, 4))
        for i in range(r.size):
            j1, p1 = K.split(r[i], c, 0, lv, 0, nl)
            j2, p2 = K.table_split(r[i], c, lv, 0, nl, table, G)
            out[i, 0], out[i, 1], out[i, 2], out[i, 3] = j1, p1, j2, p2
        return out

    for levels in (LEVELS["exp3"], LEVELS["random5"], Levels.exponential(14), LEVELS["exp6_p0.3"]):
        lv = levels.values
        table, G = K.bucket_table(lv, 0, lv.size)
        assert G > 0
        grid = np.arange(G + 1) / G
        r = np.concatenate([lv, np.nextafter(lv, 0.0), np.nextafter(lv, 2.0), grid, np.nextafter(grid, 0.0),
                            np.random.default_rng(1).uniform(0, 1.2, 5000), [0.0, 1.0, 1.5]])  # fmt: skip
        for c in (1.0, 0.7, 1.3):
            out = both(r, c, lv, lv.size, table, G)
            assert np.array_equal(out[:, 0], out[:, 2]) and np.array_equal(out[:, 1], out[:, 3]), (levels.name, c)
