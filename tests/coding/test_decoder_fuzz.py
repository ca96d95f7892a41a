"""Fuzzing every decoder (hypothesis): bit flips, truncation, crafted headers and random bytes.

Each input must end in a :class:`~qodasim.coding.DecodeError` or a *valid* vector (one that passes
``QuantizedVector.validate``); with a CRC, a corrupted message must never decode to anything but the
original.  Every call is bounded in time (1 s) and in memory (tracemalloc peak below 16 MiB with a
decoder limit of ``max_d = 2^20``).  The number of examples is fixed, so the whole file runs in
seconds.
"""

from __future__ import annotations

import dataclasses
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qodasim import Key, LayerLayout, LayerwiseQuantizer, Levels, Quantizer, coding
from qodasim.coding import DecodeError
from qodasim.coding.elias import omega_bits
from qodasim.coding.protocol import MAGIC, VERSION

MAX_D = 2**20
PEAK = 16 * 2**20


def _messages():
    rng = np.random.default_rng(5)
    v = rng.standard_normal(97)
    out = []
    glob = Quantizer(Levels.exponential(4), bucket_size=16).quantize(v, Key(1))
    layout = LayerLayout([30, 50, 17], [0, 1, 0])
    lw = LayerwiseQuantizer(layout, (Levels.uniform(3), Levels.from_interior([0.1, 0.4]))).quantize(v, Key(2))
    for qv in (glob, lw):
        for protocol in ("dense", "sparse"):
            for code in ("gamma", "delta", "omega"):
                for crc in (False, True):
                    out.append((qv, coding.encode(qv, protocol, code, crc=crc), crc))
    return out


MESSAGES = _messages()
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip


def _decode_bounded(data: bytes, decoder=None):
    """Decode under time and memory bounds; return the vector or ``None`` on DecodeError."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        qv = (decoder or coding.Decoder(max_d=MAX_D)).decode(data)
    except DecodeError:
        qv = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0, "decoding took more than a second"
    assert peak < PEAK, f"decoding peaked at {peak / 2**20:.1f} MiB"
    if qv is not None:
        dataclasses.replace(qv).validate()  # a fresh, unchecked copy: its contents must be valid
    return qv


@SETTINGS
@given(st.integers(0, len(MESSAGES) - 1), st.lists(st.integers(0, 10**9), min_size=1, max_size=3))
def test_bit_flips(which, positions):
    qv, msg, crc = MESSAGES[which]
    data = bytearray(msg.data)
    flips = {p % (8 * len(data)) for p in positions}
    for p in flips:
        data[p // 8] ^= 1 << (7 - p % 8)
    out = _decode_bounded(bytes(data))
    if crc:  # CRC-32 detects every error of up to three bits in a message this short
        assert out is None
    elif out is not None and not out.equals(qv):
        assert out.d > 0  # a different but valid vector: possible without a CRC (documented)


@SETTINGS
@given(st.integers(0, len(MESSAGES) - 1), st.data())
def test_truncation(which, data):
    qv, msg, _ = MESSAGES[which]
    cut = data.draw(st.integers(0, len(msg.data) - 1))
    out = _decode_bounded(msg.data[:cut])
    assert out is None or out.equals(qv)


@SETTINGS
@given(st.binary(min_size=0, max_size=64), st.booleans())
def test_crafted_headers(tail, crc):
    """A valid magic/version prefix with random header fields, lengths and payload."""
    first = bytes([MAGIC, (VERSION << 4) | (tail[0] & 0x0F if tail else 0)])
    data = first + tail[1:]
    if crc and len(data) > 2:
        data = data[:2] + bytes([data[2] | 0x10]) + data[3:]  # the crc-present bit
    _decode_bounded(data)


@SETTINGS
@given(st.binary(min_size=0, max_size=200))
def test_random_bytes_and_channel_state(data):
    dec = coding.Decoder(max_d=MAX_D)
    dec.decode(MESSAGES[0][1])  # a channel that has seen a spec and levels: headers may refer to it
    _decode_bounded(data, dec)


@SETTINGS
@given(st.binary(min_size=0, max_size=100), st.integers(0, 2000), st.sampled_from(["gamma", "delta", "omega"]))
def test_integer_stream_decoder(data, count, code):
    try:
        out = coding.decode_ints(data, count, code)
    except DecodeError:
        return
    assert out.shape == (count,) and np.all(out >= 1)


def test_fuzz_strategies_reach_valid_decodes():
    """The corpus is not all errors: unmodified messages decode to their vectors."""
    for qv, msg, _ in MESSAGES:
        assert _decode_bounded(msg.data).equals(qv)


@pytest.mark.parametrize("which", [0, 7, 12, 23])
def test_every_single_flip_with_crc_fails(which):
    qv, msg, crc = MESSAGES[which]
    if not crc:
        msg = coding.encode(qv, "dense", "gamma", crc=True)
    data = bytearray(msg.data)
    for p in range(0, 8 * len(data), 3):
        bad = bytearray(data)
        bad[p // 8] ^= 1 << (7 - p % 8)
        assert _decode_bounded(bytes(bad)) is None


def _header(proto: int, gb: int, d: int, pad: int = 64) -> bytes:
    bits = f"{MAGIC:08b}{VERSION:04b}{proto:02b}1000" + "0"  # γ/ω code 2, float32, spec, no CRC
    bits = bits[:-2] + "10"  # spec-present = 1, crc = 0
    bits += "0" + omega_bits(gb + 1) + omega_bits(1) + omega_bits(d) + omega_bits(1) + omega_bits(1) + "00"
    bits += omega_bits(1) + "1" + omega_bits(2) + "0" * pad
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


@pytest.mark.parametrize("proto, gb, d", [(0, 1, 2**24), (0, 0, 2**30), (1, 0, 2**26), (0, 0, 2**24), (1, 0, 2**40)])
def test_crafted_headers_fail_fast_without_allocating(proto, gb, d):
    """A 21-byte message claiming 2^24 one-coordinate buckets took 35 s and 2.6 GB; d ≥ 2^30 raised
    MemoryError; a 20-byte sparse message claiming d = 2^26 allocated 128 MiB."""
    data = _header(proto, gb, d)
    assert len(data) < 32
    # warm the decoder (JIT compilation on a cold Numba cache is not what this test times)
    coding.decode(coding.encode(Quantizer(Levels.uniform(3)).quantize(np.ones(4), Key(0)), "sparse", "omega"))
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(DecodeError):
        coding.decode(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0 and peak < 2**20


def test_decoder_limit_is_adjustable():
    v = np.random.default_rng(0).standard_normal(300)
    qv = Quantizer(Levels.uniform(3)).quantize(v, Key(2))
    msg = coding.encode(qv, "sparse", "omega")
    assert coding.decode(msg, max_d=300).equals(qv)
    with pytest.raises(DecodeError, match="max_d"):
        coding.decode(msg, max_d=299)
    with pytest.raises(ValueError, match="max_d"):
        coding.Decoder(max_d=0)


@pytest.mark.parametrize("protocol, code", [("dense", "gamma"), ("sparse", "omega"), ("dense", "delta")])
def test_crc_catches_every_single_bit_flip(protocol, code):
    """Without a CRC, 66% of single-bit flips decoded silently to another valid vector."""
    rng = np.random.default_rng(4)
    qv = Quantizer(Levels.exponential(4)).quantize(rng.standard_normal(40), Key(3))
    msg = coding.encode(qv, protocol, code, crc=True)
    assert coding.decode(msg).equals(qv)
    plain = coding.encode(qv, protocol, code)
    assert msg.bits["header"] == plain.bits["header"] + 32 and msg.nbits == plain.nbits + 32
    assert sum(msg.bits.values()) == msg.nbits
    data = bytearray(msg.data)
    for i in range(len(data) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (7 - i % 8)
        with pytest.raises(DecodeError):
            coding.decode(bytes(bad))
    with pytest.raises(DecodeError, match="requires"):
        coding.decode(plain, require_crc=True)


def test_a_header_declaring_too_many_types_is_refused_and_uniform_tables_are_shared():
    """A header declaring more layer types than ``max_types`` (a hostile one: 10^6 types fit in 750 kB,
    each one a level table) is a DecodeError before any table is read; uniform level tables are one
    shared object per ``s``, so an honest message with many types costs one table."""
    from qodasim import LayerwiseQuantizer
    from qodasim.coding import MAX_TYPES, Decoder, Encoder
    from qodasim.coding import protocol as P
    from qodasim.quantize.plan import PlanSpec

    m = MAX_TYPES + 1
    spec = PlanSpec(LayerLayout(np.array([8]), np.array([0]), n_types=m), "layer", (2.0,) * m, (0,) * m, 0)
    bits = P._header(0, 0, np.float32, spec, (Levels.uniform(3),) * m, [True] * m)[0]
    data = int(bits + "0" * (-len(bits) % 8), 2).to_bytes((len(bits) + 7) // 8, "big")
    with pytest.raises(DecodeError, match="max_types"):
        Decoder().decode(data)
    with pytest.raises(DecodeError, match="truncated"):  # allowed: read to the end of the tables
        Decoder(max_types=m).decode(data)
    with pytest.raises(ValueError, match="max_types"):
        Decoder(max_types=0)
    layout = LayerLayout(np.array([5, 3]), np.array([0, 299]), n_types=300)
    q = LayerwiseQuantizer(layout, (Levels.uniform(3),) * 299 + (Levels.uniform(7),))
    qv = q.quantize(np.arange(8.0) - 3.5, Key(1))
    back = Decoder(max_types=300).decode(Encoder().encode(qv))
    assert back.equals(qv) and len({id(lv) for lv in back.levels}) == 2
    with pytest.raises(DecodeError, match="max_types"):
        Decoder(max_types=299).decode(Encoder().encode(qv))


def test_a_stream_given_as_an_integer_array_must_hold_bytes():
    """An int64 array holding a message decodes; one value above 255 is refused (it wrapped to the same
    byte and decoded silently); float arrays are refused."""
    from qodasim.coding import decode, encode

    qv = Quantizer(Levels.uniform(3)).quantize(np.arange(8.0), Key(0))
    arr = np.frombuffer(encode(qv).data, np.uint8).astype(np.int64)
    assert decode(arr).equals(qv)
    arr[-1] += 256
    with pytest.raises(TypeError, match="values outside 0…255"):
        decode(arr)
    with pytest.raises(TypeError, match="float64 array"):
        decode(arr.astype(np.float64))
