"""The message-codec suite: every built-in (protocol, code, CRC) passes each check (one id each), and a
broken codec fails the check that concerns it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from qodasim.coding import Decoder, Encoder, Message
from qodasim.coding.check import CODEC_CHECKS, Codec, built_in_codecs, check_codec
from qodasim.suite import parametrize_with_checks


@parametrize_with_checks(built_in_codecs(), CODEC_CHECKS)
def test_built_in_codecs(obj, check):
    check(obj)


def _failing(codec) -> set[str]:
    with pytest.raises(AssertionError) as err:
        check_codec(codec)
    return {line.split(":")[0] for line in str(err.value).splitlines()[1:]}


class _Miscounting(Encoder):  # reports one bit fewer of payload than it wrote
    def encode(self, qv):
        msg = super().encode(qv)
        return replace(msg, bits={**msg.bits, "payload": msg.bits["payload"] - 1})


class _Lenient(Decoder):  # never refuses: a truncated message decodes to whatever the last one was
    last = None

    def decode(self, message, key=None):
        try:
            qv = super().decode(message, key)
        except Exception:
            if _Lenient.last is None:
                raise
            return _Lenient.last
        _Lenient.last = qv
        return qv


class _SignBlind(Decoder):  # decodes, then loses the signs
    def decode(self, message, key=None):
        qv = super().decode(message, key)
        qv.signs[:] = 1
        return qv


class _Resending(Encoder):  # forgets the channel after every message: correct, but resends the tables
    def encode(self, qv):
        msg = super().encode(qv)
        self.reset()
        return msg


def test_broken_codecs_fail_their_checks():
    assert _failing(Codec("miscount", lambda: _Miscounting(), Decoder)) == {"bits_counted"}
    assert "round_trip" in _failing(Codec("sign-blind", Encoder, lambda: _SignBlind()))
    assert "channel" in _failing(Codec("resending", lambda: _Resending(), Decoder))
    assert "truncated" in _failing(Codec("lenient", Encoder, lambda: _Lenient()))
    crcless_claims_crc = Codec("no-crc", Encoder, Decoder, crc=True)  # says CRC, sends none
    assert _failing(crcless_claims_crc) == {"corrupted"}
    assert isinstance(Message(b"", 0), Message)
