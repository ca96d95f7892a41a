"""Conformance checks for message codecs: an encoder and the decoder of its channel.

A codec is what one channel of the solver or the DDP hook uses: ``make_encoder()`` gives a stateful
sender with ``encode(qv) -> Message`` (bytes and exact bit counts) and ``make_decoder()`` the matching
receiver with ``decode(message) -> QuantizedVector``.  :data:`CODEC_CHECKS` (named
:class:`~qodasim.suite.Check` s) ask of every codec what the theory's bit counts rest on: exact round
trips, bits counted from the stream, a channel's later messages (no spec, no tables) decoding too,
and a truncated or corrupted message refused.  :func:`built_in_codecs` lists this package's
(protocol, code, CRC) combinations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import DecodeError
from ..suite import Check, run_checks

__all__ = ["CODEC_CHECKS", "Codec", "MessageDecoder", "MessageEncoder", "built_in_codecs", "check_codec"]


@runtime_checkable
class MessageEncoder(Protocol):
    """A channel's sender: ``encode(qv)`` → a :class:`~qodasim.coding.Message`."""

    def encode(self, qv):
        """The message of ``qv`` (its tables and spec only when this channel has not sent them)."""


@runtime_checkable
class MessageDecoder(Protocol):
    """A channel's receiver: ``decode(message)`` → the exact :class:`~qodasim.QuantizedVector`."""

    def decode(self, message, key=None):
        """The quantized vector of ``message``; a :class:`~qodasim.errors.DecodeError` if it is not one."""


@dataclass(frozen=True)
class Codec:
    """A named (encoder, decoder) pair of factories; ``crc``: whether its messages carry a CRC (a
    corrupted message must then be refused)."""

    name: str
    make_encoder: Callable[[], MessageEncoder]
    make_decoder: Callable[[], MessageDecoder]
    crc: bool = False


def built_in_codecs() -> list[Codec]:
    """Every (protocol, code, CRC) combination of :class:`~qodasim.coding.Encoder`."""
    from .elias import CODES
    from .protocol import PROTOCOLS, Decoder, Encoder

    return [Codec(f"{p}-{c}" + ("-crc" if crc else ""), lambda p=p, c=c, crc=crc: Encoder(p, c, crc), Decoder, crc)
            for p in PROTOCOLS for c in CODES for crc in (False, True)]  # fmt: skip


def _vectors():
    from .. import Key, LayerLayout, LayerwiseQuantizer, Levels, Quantizer

    rng = np.random.default_rng(9)
    layout = LayerLayout([30, 1, 64], [0, 1, 0])
    v = rng.standard_normal(layout.d) * np.repeat([1.0, 1e-3, 10.0], layout.sizes)
    v[::7] = 0.0
    quants = [Quantizer(Levels.uniform(7)), Quantizer(Levels.exponential(5), q=np.inf, bucket_size=16),
              LayerwiseQuantizer(layout, (Levels.uniform(3), Levels.exponential(9, 0.3)))]  # fmt: skip
    out = [q.quantize(v, Key(1, 0, 0)) for q in quants]
    out.append(quants[0].quantize(np.zeros(20), Key(2)))
    return out


def _round_trip(codec: Codec) -> None:
    """Each message, on a fresh channel, decodes to exactly the quantized vector."""
    for qv in _vectors():
        assert codec.make_decoder().decode(codec.make_encoder().encode(qv)).equals(qv), "round trip not exact"


def _bits_counted(codec: Codec) -> None:
    """The categories add up to the bits written, and the bytes hold exactly those bits."""
    for qv in _vectors():
        msg = codec.make_encoder().encode(qv)
        assert msg.nbits == sum(msg.bits.values()), f"categories {msg.bits} do not add up to {msg.nbits}"
        assert len(msg.data) == (msg.nbits + 7) // 8, f"{len(msg.data)} bytes for {msg.nbits} bits"


def _channel(codec: Codec) -> None:
    """One encoder and one decoder across messages: the later ones (spec and tables not resent) too."""
    from .. import Key, Levels, Quantizer

    q = Quantizer(Levels.uniform(7), bucket_size=8)
    rng = np.random.default_rng(3)
    enc, dec = codec.make_encoder(), codec.make_decoder()
    sizes = []
    for t in range(4):
        qv = q.quantize(rng.standard_normal(40), Key(3, 0, t))
        msg = enc.encode(qv)
        sizes.append(msg.bits.get("level_tables", 0))
        assert dec.decode(msg).equals(qv), f"message {t} of the channel does not decode exactly"
    assert sizes[0] > 0 and all(s == 0 for s in sizes[1:]), "level tables must be sent once per channel"


def _truncated(codec: Codec) -> None:
    """A message cut short is refused with a :class:`~qodasim.errors.DecodeError`."""
    for qv in _vectors():
        data = codec.make_encoder().encode(qv).data
        for cut in (1, len(data) // 2):
            try:
                codec.make_decoder().decode(data[:-cut])
            except DecodeError:
                continue
            raise AssertionError(f"a message missing its last {cut} bytes decoded")


def _corrupted(codec: Codec) -> None:
    """With a CRC, every one-bit flip is refused; without one, a flip never crashes the decoder."""
    qv = _vectors()[2]
    data = bytearray(codec.make_encoder().encode(qv).data)
    rng = np.random.default_rng(4)
    for bit in rng.choice(len(data) * 8, size=min(64, len(data) * 8), replace=False):
        bad = bytearray(data)
        bad[bit // 8] ^= 0x80 >> (bit % 8)
        try:
            codec.make_decoder().decode(bytes(bad))
        except DecodeError:
            continue
        assert not codec.crc, f"flipping bit {bit} went unnoticed despite the CRC"


#: The codec suite.
CODEC_CHECKS = (
    Check("round_trip", _round_trip),
    Check("bits_counted", _bits_counted),
    Check("channel", _channel),
    Check("truncated", _truncated),
    Check("corrupted", _corrupted),
)


def check_codec(codec: Codec) -> None:
    """Run :data:`CODEC_CHECKS` on ``codec``; ``AssertionError`` listing every failure."""
    run_checks(codec, CODEC_CHECKS)
