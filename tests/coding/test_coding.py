"""Coding tests: Elias test vectors, round trips (hypothesis), exact expected lengths vs Monte Carlo,
bounds, ledger, and corrupt input (fuzzed)."""

from __future__ import annotations

import numpy as np
import pytest
from cases import LAYOUT, LEVELS, QUANTIZERS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qodasim import Key, LayerwiseQuantizer, Levels, Quantizer
from qodasim.coding import (
    BitLedger,
    DecodeError,
    Decoder,
    Encoder,
    code_length,
    decode,
    decode_ints,
    encode,
    encode_ints,
    entropy_floor,
    expected_bits,
    expected_gap_bits,
    qsgd_dense_bound,
    qsgd_sparse_bound,
    tight_expected_dense_bits,
)
from qodasim.coding.elias import code_bits, delta_bits, gamma_bits, omega_bits
from qodasim.quantize.check import test_vector

CODES = ("gamma", "delta", "omega")

# ------------------------------------------------------------------------------- Elias codes
THEORY_VECTORS = {
    "gamma": {1: "1", 2: "010", 5: "00101"},
    "delta": {1: "1", 2: "0100", 17: "001010001"},
    "omega": {1: "0", 2: "100", 3: "110", 4: "101000", 8: "1110000", 16: "10100100000", 100: "1011011001000"},
}


@pytest.mark.parametrize("code", CODES)
def test_theory_test_vectors(code):
    for k, bits in THEORY_VECTORS[code].items():
        assert code_bits(k, code) == bits
        data, nbits = encode_ints([k], code)
        assert nbits == len(bits) and format(int.from_bytes(data, "big"), f"0{8 * len(data)}b")[:nbits] == bits
        assert code_length([k], code)[0] == len(bits)
        assert decode_ints(data, 1, code, nbits)[0] == k


@pytest.mark.parametrize("code", CODES)
def test_kernel_matches_reference_bits_and_lengths(code):
    rng = np.random.default_rng(0)
    ks = np.concatenate([np.arange(1, 300), rng.integers(1, 2**62, 200), 2 ** np.arange(63)[:63].clip(1, 2**62)])
    ks = ks[(ks >= 1) & (ks <= 2**62)]
    ref = "".join(code_bits(int(k), code) for k in ks)
    data, nbits = encode_ints(ks, code)
    assert nbits == len(ref)
    assert format(int.from_bytes(data, "big"), f"0{8 * len(data)}b")[:nbits] == ref
    assert np.array_equal(code_length(ks, code), [len(code_bits(int(k), code)) for k in ks])
    assert np.array_equal(decode_ints(data, ks.size, code, nbits), ks)


def test_lengths_closed_forms():
    for k in [1, 2, 3, 7, 8, 1000, 2**40 + 3, 2**62]:
        n = k.bit_length() - 1
        assert len(gamma_bits(k)) == 2 * n + 1
        assert len(delta_bits(k)) == n + 2 * ((n + 1).bit_length() - 1) + 1
    assert len(omega_bits(2**62)) == code_length([2**62], "omega")[0]


@pytest.mark.parametrize("bad", [[0], [-3], [2**62 + 1], [1.5]])
def test_elias_rejects_bad_integers(bad):
    with pytest.raises((ValueError, TypeError)):
        encode_ints(np.array(bad), "gamma")


@pytest.mark.parametrize("code", CODES)
def test_truncated_and_overlong_streams(code):
    data, nbits = encode_ints([5, 1000, 2**50], code)
    with pytest.raises(DecodeError, match="truncated"):
        decode_ints(data, 3, code, nbits - 1)
    with pytest.raises(DecodeError):
        decode_ints(data, 4, code, nbits)
    # γ/δ: 80 zero bits; ω: a run of 1s (ever-longer groups): no integer below 2^62 starts like that
    overlong = b"\xff" * 12 if code == "omega" else bytes(10) + b"\xff"
    with pytest.raises(DecodeError, match="longer"):
        decode_ints(overlong, 1, code)


# ----------------------------------------------------------------------------- protocols
@pytest.mark.parametrize("name", sorted(QUANTIZERS))
@pytest.mark.parametrize("protocol", ["dense", "sparse"])
@pytest.mark.parametrize("code", CODES)
def test_round_trip_every_quantizer(name, protocol, code):
    quant = QUANTIZERS[name]
    for dtype in (np.float32, np.float64):
        v = test_vector(quant.dimension or 500, 21, dtype)
        qv = quant.quantize(v, Key(4))
        msg = encode(qv, protocol, code)
        assert sum(msg.bits.values()) == msg.nbits and len(msg.data) == (msg.nbits + 7) // 8
        back = decode(msg)
        assert back.equals(qv) and back.dtype == qv.dtype
        assert np.array_equal(back.dequantize(), qv.dequantize())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    d=st.integers(1, 300),
    s=st.integers(1, 40),
    kind=st.sampled_from(["zero", "max", "normal", "spiky", "one-hot"]),
    protocol=st.sampled_from(["dense", "sparse"]),
    code=st.sampled_from(CODES),
    seed=st.integers(0, 2**32),
)
def test_round_trip_property(d, s, kind, protocol, code, seed):
    rng = np.random.default_rng(seed)
    v = {
        "zero": np.zeros(d),
        "max": np.full(d, -3.0),  # every r_i = 1/√d ... and with q = inf all indices are the top level
        "normal": rng.standard_normal(d),
        "spiky": rng.standard_normal(d) * (rng.random(d) < 0.02) * 1e6,
        "one-hot": np.eye(1, d, rng.integers(d)).ravel(),
    }[kind]
    q = np.inf if kind == "max" else 2.0
    qv = Quantizer(Levels.uniform(s), q=q).quantize(v, Key(seed))
    if kind == "max":
        assert np.all(qv.indices == s)
    back = decode(encode(qv, protocol, code))
    assert back.equals(qv)


def test_huge_gaps_round_trip():
    d = 3_000_000
    v = np.zeros(d)
    v[[0, 1_000_000, d - 1]] = [1.0, -2.0, 3.0]
    qv = Quantizer(Levels.uniform(2), q=np.inf).quantize(v, Key(0))
    for code in CODES:
        msg = encode(qv, "sparse", code)
        assert msg.bits["payload"] < 200 and decode(msg).equals(qv)


def test_channel_sends_levels_only_when_they_change():
    enc, dec = Encoder("dense", "gamma"), Decoder()
    lv = (LEVELS["uniform4"], LEVELS["exp3"], LEVELS["random5"])
    q1 = LayerwiseQuantizer(LAYOUT, lv)
    v = test_vector(LAYOUT.d, 3)
    m1 = enc.encode(q1.quantize(v, Key(1)))
    m2 = enc.encode(q1.quantize(v, Key(1, 0, 1)))
    assert m1.bits["level_tables"] > 0 and m2.bits["level_tables"] == 0 and m2.bits["header"] < m1.bits["header"]
    assert dec.decode(m1).equals(q1.quantize(v, Key(1)))
    assert dec.decode(m2).equals(q1.quantize(v, Key(1, 0, 1)))
    # change one type's levels: only that table is sent again, and counted
    q2 = LayerwiseQuantizer(LAYOUT, (lv[0], Levels.exponential(5), lv[2]))
    m3 = enc.encode(q2.quantize(v, Key(2)))
    assert m3.bits["level_tables"] == 1 + 6 + 5 * 64  # family bit, ω(7) = 6 bits, 5 interior float64
    assert dec.decode(m3).equals(q2.quantize(v, Key(2)))
    # a fresh decoder cannot read a message that relies on channel state
    with pytest.raises(DecodeError, match="none was received"):
        Decoder().decode(m2)


# ----------------------------------------------------------------------- expected lengths
@pytest.mark.parametrize("protocol", ["dense", "sparse"])
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("name", ["global-uniform4-L2", "global-exp3-L2-bucket16", "layer-scope-buckets-mixed-q"])
def test_mean_measured_length_equals_exact_expectation(protocol, code, name):
    """Mean of n = 400 real stream lengths within 6 standard errors (SE from the draws) of the exact
    expectation: a false alarm has probability ~2e-9 (normal approximation of a sum of d bounded terms)."""
    quant = QUANTIZERS[name]
    v = test_vector(quant.dimension or 700, 5)
    n = 400
    lengths = np.array([encode(quant.quantize(v, Key(9, 0, t)), protocol, code).nbits for t in range(n)])
    exact = expected_bits(v, quant, protocol, code)
    from qodasim.quantize.check import mc_mean_check

    assert mc_mean_check(lengths, exact["total"], None, 1e-9)[0] < 6  # a constant length is checked exactly
    msg = encode(quant.quantize(v, Key(9)), protocol, code)
    for part in ("header", "level_tables", "norms"):
        assert msg.bits[part] == exact[part]


def test_expected_gap_bits_against_enumeration():
    """Exact gap expectation equals the brute-force sum over all 2^d subsets (d = 10)."""
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 10)
    p[[2, 7]] = [0.0, 1.0]
    for code in CODES:
        total = 0.0
        for mask in range(1 << p.size):
            on = np.array([(mask >> i) & 1 for i in range(p.size)], bool)
            prob = np.prod(np.where(on, p, 1 - p))
            if prob == 0:
                continue
            pos = np.concatenate([[-1], np.flatnonzero(on), [p.size]])
            total += prob * code_length(np.diff(pos), code).sum()
        assert np.isclose(expected_gap_bits(p, code), total, rtol=1e-12)


def test_expected_gap_bits_long_vector_against_direct_sum():
    """d = 3000 with tiny and large probabilities: equals a direct O(d²) sum over (previous nonzero,
    next nonzero) pairs computed with explicit products (no doubling)."""
    rng = np.random.default_rng(5)
    p = np.where(rng.random(3000) < 0.5, rng.uniform(0, 1e-4, 3000), rng.uniform(0, 0.5, 3000))
    for code in CODES:
        ext = np.concatenate([p, [1.0]])
        lens = code_length(np.arange(1, ext.size + 1), code).astype(float)
        total = 0.0
        for i in range(ext.size):
            # previous nonzero at k (k = -1 is the virtual start): p_k Π_{k<m<i} (1 - p_m)
            q = np.cumprod(np.concatenate([[1.0], (1.0 - ext[:i])[::-1]]))  # q[t] = Π_{m=i-t}^{i-1}(1-p_m)
            k = np.arange(i - 1, -2, -1)  # k = i-1 .. -1, distance t+1 where t = i-1-k
            pk = np.where(k >= 0, ext[np.maximum(k, 0)], 1.0)
            total += ext[i] * np.sum(pk * q[: i + 1] * lens[i - k - 1])
        assert np.isclose(expected_gap_bits(p, code), total, rtol=1e-10)


def test_bits_below_qsgd_bound_and_above_entropy():
    """Uniform levels, sparse Elias-ω (QSGD's coding): measured payload + norm ≤ QSGD Thm 3.2 (without
    its o(1)) where the asymptotics apply (d = 2^16); at s = √d below 2.8d + 32; entropy floor below
    the expectation."""
    d = 2**16
    rng = np.random.default_rng(0)
    for s in (2, 4, 16):
        quant = Quantizer(Levels.uniform(s))
        for v in (rng.standard_normal(d), rng.standard_normal(d) ** 3):
            msgs = [encode(quant.quantize(v, Key(1, 0, t)), "sparse", "omega") for t in range(5)]
            measured = max(m.bits["payload"] + m.bits["norms"] for m in msgs)
            assert measured <= qsgd_sparse_bound(s, d)
            e = expected_bits(v, quant, "sparse", "omega")
            assert entropy_floor(v, quant) <= e["payload"]
    d = 4096  # QSGD's dense regime s = √d, with its recursive Elias (ω) coding
    quant = Quantizer(Levels.uniform(64))
    for v in (rng.standard_normal(d), rng.standard_normal(d) ** 3):
        m = encode(quant.quantize(v, Key(0)), "sparse", "omega")
        assert m.bits["payload"] + m.bits["norms"] <= qsgd_dense_bound(d)
        e = expected_bits(v, quant, "sparse", "omega")
        assert e["payload"] + e["norms"] <= qsgd_dense_bound(d)
    # not for every vector in our format: all-ones puts every coordinate exactly on level 1/64, costing
    # ω(gap 1) + sign + ω(1) = 3 bits each (documented in qsgd_dense_bound)
    m = encode(quant.quantize(np.ones(d), Key(0)), "sparse", "omega")
    assert m.bits["payload"] == 3 * d + 1 > qsgd_dense_bound(d)


@pytest.mark.parametrize("levels", [Levels.uniform(4), Levels.uniform(15), Levels.exponential(5)])
def test_tight_expected_length_dominates_and_is_attained(levels):
    """The worst-case expected dense payload over unit vectors is ≥ the exact expectation of random
    and adversarial-looking unit vectors, and is approached (within one coordinate's cost) by the
    two-point vector from the envelope."""
    from qodasim.bounds.envelope import envelope
    from qodasim.coding.expected import dense_length_arcs

    d = 256
    bound = tight_expected_dense_bits(levels, d)
    quant = Quantizer(levels)
    rng = np.random.default_rng(1)
    for v in (rng.standard_normal(d), np.ones(d), np.eye(1, d).ravel(), rng.standard_normal(d) ** 5):
        assert expected_bits(v, quant)["payload"] <= bound + 1e-9
    pt = envelope(dense_length_arcs(levels), 1.0 / d)
    lam = (pt.w_right - 1 / d) / (pt.w_right - pt.w_left) if pt.w_right > pt.w_left else 1.0
    n_a = int(np.floor(lam * d))
    w = np.concatenate([np.full(n_a, pt.w_left), np.full(d - n_a, pt.w_right)])
    v = np.sqrt(w)
    got = expected_bits(v / np.linalg.norm(v), quant)["payload"]
    max_cost = code_length([levels.size], "gamma")[0] + 1
    assert got >= bound - 2 * max_cost


# ---------------------------------------------------------------------------- corrupt input
def _message(protocol="dense", code="gamma"):
    quant = LayerwiseQuantizer(
        LAYOUT, (LEVELS["uniform4"], LEVELS["exp3"], LEVELS["random5"]), bucket_size=(None, 8, 16)
    )
    return encode(quant.quantize(test_vector(LAYOUT.d, 2), Key(3)), protocol, code)


@pytest.mark.parametrize("protocol", ["dense", "sparse"])
def test_truncated_messages_raise(protocol):
    msg = _message(protocol)
    for cut in range(0, len(msg.data)):
        with pytest.raises(DecodeError):
            decode(msg.data[:cut])


def test_wrong_header_raises():
    data = bytearray(_message().data)
    bad_magic = bytes([data[0] ^ 0xFF]) + bytes(data[1:])
    with pytest.raises(DecodeError, match="magic"):
        decode(bad_magic)
    bad_version = bytearray(data)
    bad_version[1] = (bad_version[1] & 0x0F) | 0x70
    with pytest.raises(DecodeError, match="version"):
        decode(bytes(bad_version))
    with pytest.raises(DecodeError, match="trailing"):
        decode(bytes(data) + b"\x00\x01")
    with pytest.raises(DecodeError):
        decode(b"")
    with pytest.raises(TypeError):
        decode("not bytes")


def test_absurd_lengths_raise_quickly():
    from qodasim.coding.protocol import _Bits

    w = _Bits()
    w.uint(0xD7, 8)
    w.uint(1, 4)
    w.uint(0, 2)
    w.uint(0, 2)
    w.uint(0, 1)
    w.uint(1, 1)
    w.uint(0, 1)  # scope global
    w.omega(1)  # no global bucket
    w.omega(1)  # one layer...
    w.omega(2**60)  # ...of 2^60 coordinates
    bits = w.string() + "0" * (-len(w.string()) % 8)
    data = int(bits, 2).to_bytes(len(bits) // 8, "big")
    with pytest.raises(DecodeError):
        decode(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_bit_flips_never_crash_or_hang(data):
    """Flipped bits give a DecodeError or a *valid* vector (a flip can land on another valid code
    word), never a crash, a hang, non-finite norms or out-of-range indices."""
    protocol = data.draw(st.sampled_from(["dense", "sparse"]))
    code = data.draw(st.sampled_from(CODES))
    raw = bytearray(_message(protocol, code).data)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, 8 * len(raw) - 1))
        raw[pos // 8] ^= 0x80 >> (pos % 8)
    try:
        qv = decode(bytes(raw))
    except DecodeError:
        return
    assert np.all(np.isfinite(qv.norms)) and np.all(qv.norms >= 0)
    top = np.array([qv.levels[t].size - 1 for t in qv.plan.coord_type()])
    assert np.all(qv.indices.astype(np.int64) <= top)
    assert np.all(np.isfinite(qv.dequantize(np.float64)))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=64))
def test_fuzz_random_bytes(raw):
    try:
        decode(b"\xd7\x10" + raw)
    except DecodeError:
        pass


# ----------------------------------------------------------------------------------- ledger
def test_ledger_counts_messages_and_bits(tmp_path):
    led = BitLedger()
    quant = Quantizer(Levels.uniform(4))
    encs = [Encoder() for _ in range(3)]
    total = 0
    for r in range(4):
        for k in range(3):
            m = encs[k].encode(quant.quantize(test_vector(200, r), Key(0, k, r)))
            led.record(k, r, m)
            total += m.nbits
    assert len(led) == 12 and led.total() == total and led.messages(worker=1) == 4 and led.messages(round=2) == 3
    assert sum(led.per_worker().values()) == total and led.totals()["total"] == total
    rounds, cum = led.cumulative_by_round()
    assert list(rounds) == [0, 1, 2, 3] and cum[-1] == total
    assert led.totals()["level_tables"] == 3 * (1 + 6)  # once per channel: family bit + ω(s = 4) (uniform: no floats)
    back = BitLedger.load(led.save(tmp_path / "ledger.json"))
    assert np.array_equal(back.table(), led.table())
    led.record(0, 5, {"payload": 10.5})
    with pytest.raises(ValueError):
        led.record(0, 0, {"payload": -1})
    with pytest.raises(ValueError):
        led.record(0, 0, {"bogus": 1})
    with pytest.raises(ValueError):
        led.record(-1, 0, {"payload": 1})
    with pytest.raises(TypeError):
        led.record(0, 0, 17)
    n = len(led)
    led.record_all(3, 6, {"payload": 64.0, "header": 8})
    assert len(led) == n + 3 and led.messages(round=6) == 3 and led.table()[-3:, 0].tolist() == [0, 1, 2]
    assert np.all(led.table()[-3:, 2:] == [8.0, 0.0, 0.0, 64.0])
    for bad in (0, -2, True, 1.5):
        with pytest.raises(ValueError, match="workers"):
            led.record_all(bad, 7, {"payload": 1})
    with pytest.raises(ValueError):
        led.record_all(2, 7, {"payload": -1})
    assert len(led) == n + 3


def test_ledger_totals_by_category_worker_and_round():
    """Hand-made rows: every category's total, per worker, per round and cumulative (found by mutation
    testing: per-category totals and per-round sums were unchecked)."""
    led = BitLedger()
    led.record(0, 0, {"header": 8, "payload": 100})
    led.record(1, 0, {"level_tables": 7, "norms": 32, "payload": 50})
    led.record(1, 2, {"payload": 20.5})
    want = {"header": 8.0, "level_tables": 7.0, "norms": 32.0, "payload": 170.5}
    for c, v in want.items():
        assert led.total(c) == v
    assert led.totals() == want | {"total": 217.5} and led.total() == 217.5
    assert led.per_worker() == {0: 108.0, 1: 109.5} and led.per_round() == {0: 197.0, 2: 20.5}
    rounds, cum = led.cumulative_by_round()
    assert rounds.tolist() == [0, 2] and cum.tolist() == [197.0, 217.5]
    assert led.messages() == 3 and led.messages(worker=1, round=0) == 1 and led.messages(round=1) == 0
    with pytest.raises(ValueError, match="finite and non-negative"):
        led.record(0, 0, {"payload": "many"})


def test_bad_protocol_arguments():
    qv = Quantizer(Levels.uniform(2)).quantize(np.ones(4), 0)
    with pytest.raises(ValueError, match="protocol"):
        encode(qv, "zip")
    with pytest.raises(ValueError, match="code"):
        encode(qv, "dense", "huffman")
    with pytest.raises(TypeError):
        encode(np.ones(4))
    with pytest.raises(ValueError):
        expected_bits(np.ones(4), Quantizer(Levels.uniform(2)), "zip")
    with pytest.raises(ValueError):
        qsgd_sparse_bound(1, 10)


def test_code_word_tables_equal_the_reference_code_words():
    """The encoder's lookup tables hold THEORY §3's code words (the plain-Python reference
    ``elias.*_bits``), and every decoder table entry names the unique word starting its bit pattern."""
    from qodasim.coding import _bits as B
    from qodasim.coding.elias import delta_bits, gamma_bits, omega_bits

    for code, ref in enumerate((gamma_bits, delta_bits, omega_bits)):
        for k in range(1, B.ENC_N):
            word = ref(k)
            assert B.ENC_LEN[code, k] == len(word) and B.ENC_WORD[code, k] == int(word, 2), (code, k)
        for w in range(1 << B.DEC_BITS):
            e = int(B.DEC[code, w])
            if e:
                k, n = e >> 5, e & 31
                assert format(w, f"0{B.DEC_BITS}b")[:n] == ref(k), (code, w)
            else:  # no word of ≤ DEC_BITS bits (and k < ENC_N) is a prefix of w
                bits = format(w, f"0{B.DEC_BITS}b")
                assert not any(bits.startswith(ref(k)) for k in range(1, 64) if len(ref(k)) <= B.DEC_BITS)


def _encoded_body(idx, sign, protocol, code, top):
    """``(buffer, bit count, the bits as a '0'/'1' string)`` of the body of ``idx``/``sign`` (no norms)."""
    from qodasim.coding import _bits as Bt
    from qodasim.coding import _payload as P

    buf = np.zeros(P.max_body_bits(idx.size, 0, top, protocol, code) // 8 + 64, np.uint8)
    acc, nacc, pos, _ = P.encode_body(buf, np.uint64(0), 0, 0, np.zeros(0, np.uint32), idx, sign, protocol, code, top)
    total = pos * 8 + nacc
    Bt.flush(buf, np.uint64(acc), nacc, pos)
    return buf, total, "".join(format(b, "08b") for b in buf[: (total + 7) // 8])[:total]


def _decoded_body(buf, total, protocol, code, d, type_max):
    """``(end position, error code, indices, signs)`` read back from the first ``total`` bits (one type)."""
    from qodasim.coding import _payload as P

    out_idx, out_sign = np.zeros(d, np.int64), np.ones(d, np.int8)
    p, err = P.decode_body(buf, 0, total, 0, protocol, code, np.array([0, d]), np.array([0]),
                           np.array([type_max]), np.zeros(0, np.uint32), out_idx, out_sign)  # fmt: skip
    return p, err, out_idx, out_sign


@pytest.mark.parametrize("code", [0, 1, 2])
@pytest.mark.parametrize("density", [0.9, 0.2, 0.0005])
@pytest.mark.parametrize("top", [3, 2000])
def test_sparse_payload_equals_the_reference_bits_and_decodes_back(code, density, top):
    """The sparse body (one-write fast path for short gap/index words, one-window decoding) is bit for
    bit THEORY §3's sequence — Elias(gap), sign, Elias(j) per nonzero, Elias(d − prev) — from the
    plain-Python code words, for short and long gaps (≥ 1024) and indices (≥ 1024), and decodes back;
    an index above its type's maximum is refused at the same bit position as the bit-by-bit reader."""
    from qodasim.coding import _payload as P
    from qodasim.coding.elias import delta_bits, gamma_bits, omega_bits

    ref = (gamma_bits, delta_bits, omega_bits)[code]
    rng = np.random.default_rng(code * 100 + int(density * 1e4) + top)
    d = 6000
    idx = np.where(rng.random(d) < density, rng.integers(1, top + 1, d), 0).astype(np.uint16)
    sign = np.where(rng.random(d) < 0.5, -1, 1).astype(np.int8)
    bits, prev = [], -1
    for i in np.flatnonzero(idx):
        bits += [ref(int(i) - prev), "1" if sign[i] < 0 else "0", ref(int(idx[i]))]
        prev = int(i)
    bits.append(ref(d - prev))
    want = "".join(bits)
    buf, total, got = _encoded_body(idx, sign, P.SPARSE, code, top)
    assert got == want

    def decode(type_max):
        return _decoded_body(buf, total, P.SPARSE, code, d, type_max)

    p, err, out_idx, out_sign = decode(top)
    assert err == 0 and p == total and np.array_equal(out_idx, idx) and np.array_equal(out_sign[idx > 0], sign[idx > 0])
    if idx.any():
        big = int(idx.max())
        first = int(np.flatnonzero(idx == big)[0])
        upto, prev = 0, -1
        for i in np.flatnonzero(idx[: first + 1]):
            upto += len(ref(int(i) - prev)) + 1 + len(ref(int(idx[i])))
            prev = int(i)
        p, err, _, _ = decode(big - 1)
        assert err != 0 and p == upto


@pytest.mark.parametrize("code", [0, 1, 2])
@pytest.mark.parametrize("density", [0.9, 0.05])
@pytest.mark.parametrize("top", [3, 2000])
def test_dense_payload_equals_the_reference_bits_and_decodes_back(code, density, top):
    """The dense body (index word and sign bit in one write; one-window decoding of short words) is
    bit for bit THEORY §3's sequence — Elias(j + 1), then a sign bit if j > 0 — from the plain-Python
    code words, for short and long words (j + 1 ≥ 1024), decodes back, and an index above its type's
    maximum is refused at the same bit position as the bit-by-bit reader (just after the word)."""
    from qodasim.coding import _bits as Bt
    from qodasim.coding import _payload as P
    from qodasim.coding.elias import delta_bits, gamma_bits, omega_bits

    ref = (gamma_bits, delta_bits, omega_bits)[code]
    rng = np.random.default_rng(code * 100 + int(density * 1e4) + top)
    d = 5003
    idx = np.where(rng.random(d) < density, rng.integers(1, top + 1, d), 0).astype(np.uint16)
    sign = np.where(idx > 0, np.where(rng.random(d) < 0.5, -1, 1), 1).astype(np.int8)
    longest = [k for k in range(2, min(top + 2, Bt.ENC_N)) if len(ref(k)) == Bt.DEC_BITS]
    if longest:  # the last word fills the decoder's window exactly: its sign bit is the window's last bit
        idx[-1], sign[-1] = longest[0] - 1, -1
    words = [ref(int(j) + 1) + (("1" if s < 0 else "0") if j else "") for j, s in zip(idx, sign)]
    want = "".join(words)
    buf, total, got = _encoded_body(idx, sign, P.DENSE, code, top)
    assert got == want

    def decode(type_max, upto=total):
        return _decoded_body(buf, upto, P.DENSE, code, d, type_max)

    p, err, out_idx, out_sign = decode(top)
    assert err == 0 and p == total and np.array_equal(out_idx, idx) and np.array_equal(out_sign, sign)
    big = int(idx.max())
    first = int(np.flatnonzero(idx == big)[0])
    p, err, _, _ = decode(big - 1)
    assert err == Bt.E_RANGE and p == sum(map(len, words[:first])) + len(ref(big + 1))
    p, err, _, _ = decode(top, total - 1)  # one bit short: the last word or sign bit is truncated
    assert err == Bt.E_TRUNCATED


def test_encoder_reuses_its_steady_header_with_the_same_bits():
    """An encoder reuses the header of the steady state (same spec and level objects: nothing resent);
    a sequence that changes spec, levels (equal and unequal values), dtype, and resets gives the bytes
    and bit counts of an encoder that builds every header afresh."""
    from qodasim import LayerLayout, LayerwiseQuantizer
    from qodasim.coding import Encoder

    class Afresh(Encoder):
        def _head(self, qv):
            self._steady = None
            return super()._head(qv)

    rng = np.random.default_rng(4)
    lay = LayerLayout([30, 50], [0, 1])
    lw = LayerwiseQuantizer(lay, (Levels.uniform(3), Levels.exponential(4)))
    lw_same_values = LayerwiseQuantizer(lay, (Levels.uniform(3), Levels.exponential(4)))
    lw_other = LayerwiseQuantizer(lay, (Levels.uniform(3), Levels.uniform(5)))
    glob = Quantizer(Levels.uniform(7))
    steps = [(lw, 80, np.float64)] * 3 + [(lw_same_values, 80, np.float64), (lw_other, 80, np.float64),
             (lw_other, 80, np.float64), (lw_other, 80, np.float32), (lw_other, 80, np.float32),
             (glob, 80, np.float64), (glob, 80, np.float64), (glob, 81, np.float64),
             ("reset", 0, None), (glob, 81, np.float64), (glob, 81, np.float64)]  # fmt: skip
    for protocol in ("dense", "sparse"):
        for code in ("gamma", "omega"):
            for crc in (False, True):
                a, b, dec = Encoder(protocol, code, crc), Afresh(protocol, code, crc), Decoder()
                for t, (q, d, dt) in enumerate(steps):
                    if q == "reset":
                        a.reset()
                        b.reset()
                        dec = Decoder()
                        continue
                    qv = q.quantize(rng.standard_normal(d).astype(dt), Key(1, 0, t))
                    ma, mb = a.encode(qv), b.encode(qv)
                    assert (ma.data, ma.nbits, ma.bits) == (mb.data, mb.nbits, mb.bits), (protocol, code, crc, t)
                    assert dec.decode(ma).equals(qv)


def test_uniform_level_tables_travel_as_their_parameter():
    from qodasim import Key, Levels, Quantizer, coding

    v = np.random.default_rng(3).standard_normal(100)
    for s in (1, 4, 255, 3000):
        qv = Quantizer(Levels.uniform(s)).quantize(v, Key(1))
        msg = coding.encode(qv)
        assert msg.bits["level_tables"] == 1 + len(coding.elias.omega_bits(s))
        assert coding.decode(msg).equals(qv)
    qv = Quantizer(Levels.exponential(3)).quantize(v, Key(1))
    assert coding.encode(qv).bits["level_tables"] == 1 + len(coding.elias.omega_bits(5)) + 3 * 64


def test_decoder_group_count_matches_the_plan():
    """The decoder's pre-allocation check counts norm groups by arithmetic; it must equal the plan's."""
    from qodasim import LayerLayout
    from qodasim.coding.protocol import _groups_of
    from qodasim.quantize import PlanSpec
    from qodasim.quantize.core import cached_plan

    rng = np.random.default_rng(8)
    for _ in range(40):
        sizes = rng.integers(1, 50, int(rng.integers(1, 5)))
        m = int(rng.integers(1, 3))
        layout = LayerLayout(sizes, rng.integers(0, m, sizes.size), n_types=m)
        if rng.random() < 0.5:
            spec = PlanSpec(layout, "global", (2.0,) * m, (0,) * m, int(rng.choice([0, 1, 3, 7, 64])))
        else:
            spec = PlanSpec(layout, "layer", (2.0,) * m, tuple(int(b) for b in rng.choice([0, 1, 4, 9], m)), 0)
        assert _groups_of(spec) == cached_plan(spec).n_groups
