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
