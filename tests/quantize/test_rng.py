import numpy as np
import pytest

from qodasim.quantize._numba import first_state, uniform_of
from qodasim.rng import Key, as_key, stream_base, uniform_scalar_py, uniforms


def test_numpy_python_and_numba_uniforms_agree_bitwise():
    base = stream_base(Key(123, 4, 5), 6)
    idx = np.array([0, 1, 2, 17, 2**40, 2**62], dtype=np.int64)
    ref = [uniform_scalar_py(base, int(i)) for i in idx]
    assert np.array_equal(uniforms(base, idx), ref)
    nb = [uniform_of(np.uint64(first_state(np.uint64(base), int(i)))) for i in idx]
    assert np.array_equal(nb, ref)


def test_stream_base_depends_on_every_field():
    k = Key(1, 2, 3)
    bases = {stream_base(k, 0), stream_base(Key(2, 2, 3), 0), stream_base(Key(1, 3, 3), 0),
             stream_base(Key(1, 2, 4), 0), stream_base(k, 1)}  # fmt: skip
    assert len(bases) == 5


def test_uniforms_look_uniform():
    # 2^16 draws: mean has standard error sqrt(1/12/n) ~ 1.1e-3; 5 standard errors
    u = uniforms(stream_base(Key(9), 0), np.arange(2**16))
    assert np.all((u >= 0) & (u < 1))
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    # equal-width histogram: chi-square with 15 dof; 99.99% quantile is ~ 44
    counts = np.bincount((u * 16).astype(int), minlength=16)
    chi2 = ((counts - u.size / 16) ** 2 / (u.size / 16)).sum()
    assert chi2 < 44


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, "3", True])
def test_bad_keys(bad):
    with pytest.raises((TypeError, ValueError)):
        Key(bad)
    with pytest.raises((TypeError, ValueError)):
        as_key(bad)


def test_as_key_forms():
    assert as_key(5) == Key(5) and as_key((5, 1, 2)) == Key(5, 1, 2) and Key(5).with_round(3) == Key(5, 0, 3)


def test_vectorized_stream_bases_match_scalar():
    from qodasim.rng import stream_bases

    key = Key(2**63 + 5, 3, 2**40)
    layers = np.array([0, 1, 7, 1000, 2**40])
    assert [int(x) for x in stream_bases(key, layers)] == [stream_base(key, int(l)) for l in layers]


def test_numba_stream_base_of_layer_zero_equals_the_python_one():
    """The fused small-vector path computes the stream base in uint64 arithmetic; it must equal
    :func:`stream_base` (Python integers, ``& MASK64``) including wraparound at 2^64."""
    import numpy as np

    from qodasim.quantize._numba import stream_base0
    from qodasim.rng import MASK64, Key, stream_base

    rng = np.random.default_rng(0)
    keys = [Key(0), Key(MASK64, MASK64, MASK64), Key(1, 2, 3)]
    keys += [Key(*(int(x) for x in rng.integers(0, 2**63, 3, dtype=np.uint64) * 2 + 1)) for _ in range(50)]
    for k in keys:
        got = stream_base0(np.uint64(k.seed), np.uint64(k.worker), np.uint64(k.round))
        assert int(got) == stream_base(k, 0), k


def test_stream_bases_of_keys_equal_the_per_key_bases():
    """The batch's one-pass bases equal ``stream_bases`` key by key, at the 2^64 edges too."""
    from qodasim.rng import stream_bases, stream_bases_of_keys

    rng = np.random.default_rng(0)
    top = 2**64 - 1
    keys = [Key(int(rng.integers(0, top, dtype=np.uint64)), int(rng.integers(0, top, dtype=np.uint64)),
                int(rng.integers(0, 1000))) for _ in range(40)]  # fmt: skip
    keys += [Key(top, top, top), Key(0), Key(0, top, 0)]
    for layers in (np.array([0], np.uint64), np.array([0, 1, 5, 2**40, top], np.uint64), np.arange(7)):
        got = stream_bases_of_keys(keys, layers)
        assert got.dtype == np.uint64
        assert np.array_equal(got, np.concatenate([stream_bases(k, layers) for k in keys]))
    assert stream_bases_of_keys(keys[:1], np.arange(3)).shape == (3,)


def test_trusted_keys_are_the_checked_ones():
    """``Key._trusted`` (the solver's unchecked constructor) makes the key ``Key`` makes: equal, same
    hash, repr, words and pickle round trip."""
    import pickle

    for fields in ((0, 0, 0), (5, 3, 7), (2**64 - 1, 2**63, 12345)):
        a, b = Key(*fields), Key._trusted(*fields)
        assert a == b and hash(a) == hash(b) and repr(a) == repr(b)
        assert a._words == b._words and all(type(w) is type(x) for w, x in zip(a._words, b._words))
        assert pickle.loads(pickle.dumps(b)) == a and b.with_round(9) == a.with_round(9)
