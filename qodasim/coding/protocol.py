"""Messages: a :class:`~qodasim.quantize.QuantizedVector` as a real bit stream, and back (THEORY §3).

Format (version 2), MSB first::

    header   magic 0xD7 (8) · version (4) · protocol (2: dense 0, sparse 1) · code (2: γ 0, δ 1, ω 2)
             · dtype (1: float32 0, float64 1) · spec-present (1) · crc-present (1)
             [crc]   CRC-32 (32; zlib's polynomial) of the whole message, zero-padded to a byte, computed
                     with these 32 bits set to zero
             [spec]  scope (1: global 0, layer 1) · ω(global_bucket+1) · ω(n_layers)
                     · per layer ω(size) ω(type+1) · ω(M) · per type: q-code (2: 2, ∞, 1, explicit)
                       [float64 q] · ω(bucket+1)
             table flags: M bits (1 = this type's levels follow)
    tables   per flagged type: family (1): 1 = uniform ``j/s`` followed by ω(s); 0 = explicit, followed
             by ω(number of levels) · the interior levels as float64
    norms    one float32 per norm group
    payload  dense or sparse (see :mod:`qodasim.coding._payload`), zero-padded to a byte

The CRC (``crc=True``) is an optional integrity check: without it a flipped bit can decode to a
different valid vector (the format has little redundancy); with it every single-bit error, and all
but a fraction ``2^{-32}`` of other corruptions, is a :class:`DecodeError`.  Its 33 bits (flag + CRC)
count as header bits.  Decoders check the CRC first, and check that the stream can hold what its
header claims (norms, one bit per dense coordinate, ``d ≤ max_d``) before allocating anything.

Layer-wise messages are the same with per-type tables.  An :class:`Encoder` / :class:`Decoder` pair
keeps channel state: the spec and each type's levels are sent only when they change (and counted
then).  :func:`encode` / :func:`decode` are the stateless, fully self-describing forms.
Bits are counted from the stream itself and split into header / level_tables / norms / payload.
"""

from __future__ import annotations

import functools
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..levels import MAX_INTERVALS, Levels
from ..quantize.layers import LayerLayout
from ..quantize.plan import PlanSpec, cached_plan
from ..quantize.vector import QuantizedVector
from ..rng import Key
from ..validate import check_int
from . import _bits, _payload
from .elias import SLACK, code_id, omega_bits, slack_buffer
from .errors import DecodeError

__all__ = ["Message", "Encoder", "Decoder", "encode", "decode", "fixed_bits", "PROTOCOLS", "MAGIC", "VERSION"]

MAGIC, VERSION = 0xD7, 2
PROTOCOLS = ("dense", "sparse")
_QCODES = {2.0: 0, np.inf: 1, 1.0: 2}
#: Decoders refuse messages claiming more coordinates than this by default (a corrupt or hostile
#: header must not allocate): 2^24 coordinates, 32 MiB of output.  Pass ``max_d`` for larger vectors.
MAX_D = 2**24
#: Decoders refuse headers declaring more layer types than this by default: every type costs the
#: decoder its own level table (a hostile header declaring 10^6 types fits in 750 kB).  Pass
#: ``max_types`` for more.
MAX_TYPES = 2**16
#: Bit offset of the CRC field (right after the 19 fixed header bits) and its width.
_CRC_AT, _CRC_BITS = 19, 32


@dataclass(frozen=True)
class Message:
    """An encoded message: ``data`` (bytes, zero-padded) and its exact bit counts.

    Attributes
    ----------
    data : bytes
    nbits : int
        Bits written (before the padding to a whole byte).
    bits : dict
        ``{"header", "level_tables", "norms", "payload"}`` → bits; they sum to ``nbits``.
    """

    data: bytes
    nbits: int
    bits: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.data)


# ------------------------------------------------------------------------------------ header bits
class _Bits:
    """A small MSB-first bit builder for headers (Python; headers are short)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def uint(self, value: int, n: int) -> None:
        self.parts.append(format(value, f"0{n}b") if n else "")

    def omega(self, k: int) -> None:
        self.parts.append(omega_bits(k))

    def f64(self, x: float) -> None:
        self.uint(struct.unpack(">Q", struct.pack(">d", x))[0], 64)

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def string(self) -> str:
        return "".join(self.parts)


def _write_spec(w: _Bits, spec: PlanSpec) -> None:
    lay = spec.layout
    w.uint(0 if spec.scope == "global" else 1, 1)
    w.omega(spec.global_bucket + 1)
    w.omega(lay.n_layers)
    for size, typ in zip(lay.sizes.tolist(), lay.types.tolist()):
        w.omega(size)
        w.omega(typ + 1)
    w.omega(lay.n_types)
    for q, b in zip(spec.type_q, spec.type_bucket):
        qc = _QCODES.get(float(q), 3)
        w.uint(qc, 2)
        if qc == 3:
            w.f64(float(q))
        w.omega(int(b) + 1)


class _Reader:
    """Header reader over a slack buffer, using the same checked kernels as the payload."""

    def __init__(self, buf: np.ndarray, total: int):
        self.buf, self.total, self.pos = buf, total, 0

    def _check(self, err: int) -> None:
        if err:
            raise DecodeError(f"header: {_bits.ERROR_TEXT[err]}")

    def uint(self, n: int) -> int:
        val, self.pos, err = _bits.get(self.buf, self.pos, self.total, n)
        self._check(err)
        return int(val)

    def omega(self) -> int:
        val, self.pos, err = _bits.get_code(self.buf, self.pos, self.total, 2)
        self._check(err)
        return int(val)

    def f64(self) -> float:
        hi, lo = self.uint(32), self.uint(32)
        return struct.unpack(">d", struct.pack(">Q", (hi << 32) | lo))[0]

    def remaining(self) -> int:
        return self.total - self.pos


def _read_layers(r: _Reader, max_d: int) -> tuple[list, list]:
    """The layer count, then each layer's size and type; ``d`` bounded by ``max_d`` as it is read."""
    n_layers = r.omega()
    if n_layers > r.remaining() // 2:  # every layer costs at least 2 bits
        raise DecodeError(f"header: {n_layers} layers cannot fit in the message")
    sizes, types = [], []
    d = 0
    for _ in range(n_layers):
        sizes.append(r.omega())
        types.append(r.omega() - 1)
        d += sizes[-1]
        if d > max_d:
            raise DecodeError(f"header: d >= {d} exceeds the decoder's limit max_d = {max_d}")
    return sizes, types


def _read_type_options(r: _Reader, m: int, max_d: int) -> tuple[list, list]:
    """Each type's norm order (2 bits: 2, ∞, 1, or a float64 ``≥ 1`` follows) and bucket size."""
    qs, buckets = [], []
    for _ in range(m):
        q = {0: 2.0, 1: np.inf, 2: 1.0}.get(r.uint(2))
        if q is None:
            q = r.f64()
            if not q >= 1.0:
                raise DecodeError(f"header: invalid norm order q = {q}")
        qs.append(q)
        buckets.append(r.omega() - 1)
        if buckets[-1] > max_d:
            raise DecodeError(f"header: bucket size {buckets[-1]} exceeds the decoder's limit {max_d}")
    return qs, buckets


def _read_spec(r: _Reader, max_d: int = MAX_D, max_types: int = MAX_TYPES) -> PlanSpec:
    scope = "layer" if r.uint(1) else "global"
    gb = r.omega() - 1
    if gb > max_d:
        raise DecodeError(f"header: bucket size {gb} exceeds the decoder's limit {max_d}")
    sizes, types = _read_layers(r, max_d)
    m = r.omega()
    if m > max_types:
        raise DecodeError(f"header: {m} types exceed the decoder's limit max_types = {max_types}")
    if m > r.remaining() // 3 or (types and max(types) >= m):
        raise DecodeError(f"header: inconsistent number of types ({m})")
    qs, buckets = _read_type_options(r, m, max_d)
    if scope == "global" and (any(buckets) or len(set(qs)) > 1):
        raise DecodeError("header: a global-scope spec cannot have per-type buckets or orders")
    if scope == "layer" and gb:
        raise DecodeError("header: a layer-scope spec cannot have a global bucket")
    try:
        layout = LayerLayout(np.array(sizes, np.int64), np.array(types, np.int64), n_types=m)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"header: bad layout: {exc}") from None
    return PlanSpec(layout, scope, tuple(qs), tuple(buckets), gb)


@functools.lru_cache(maxsize=4096)
def _uniform_levels(s: int) -> Levels:
    """``Levels.uniform(s)``, one shared object per ``s`` (levels are immutable): a header whose types
    all name the same family costs one table, not one per type."""
    return Levels.uniform(s)


def _read_levels(r: _Reader) -> Levels:
    if r.uint(1):  # uniform family: ω(s)
        s = r.omega()
        if s > MAX_INTERVALS:
            raise DecodeError(f"level table: uniform s = {s} exceeds {MAX_INTERVALS}")
        return _uniform_levels(s)
    n = r.omega()
    if n < 2 or (n - 2) * 64 > r.remaining():
        raise DecodeError(f"level table: {n} levels cannot fit in the message")
    inner = [r.f64() for _ in range(n - 2)]
    try:
        return Levels.from_interior(inner)
    except ValueError as exc:
        raise DecodeError(f"level table: {exc}") from None


# --------------------------------------------------------------------------------------- encoder
def _header(proto: int, code: int, dtype, spec: PlanSpec | None, levels, send, crc: bool = False):
    """Header (and level tables) as a bit string; ``spec=None`` means "same spec as before"."""
    return _header_cached(proto, code, np.dtype(dtype) == np.float64, spec, tuple(levels),
                          tuple(bool(f) for f in send), bool(crc))  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _header_cached(proto: int, code: int, is_f64: bool, spec, levels, send, crc: bool) -> tuple[str, int, int]:
    w = _Bits()
    w.uint(MAGIC, 8)
    w.uint(VERSION, 4)
    w.uint(proto, 2)
    w.uint(code, 2)
    w.uint(int(is_f64), 1)
    w.uint(int(spec is not None), 1)
    w.uint(int(crc), 1)
    if crc:
        w.uint(0, _CRC_BITS)  # filled in after the body is written
    if spec is not None:
        _write_spec(w, spec)
    for flag in send:
        w.uint(int(flag), 1)
    header_bits = len(w)
    for lv, flag in zip(levels, send):
        if flag:
            if lv.uniform_s:  # the family and its parameter: exactly reproducible (j/s, correctly rounded)
                w.uint(1, 1)
                w.omega(lv.uniform_s)
                continue
            w.uint(0, 1)
            w.omega(lv.size)
            for x in lv.values[1:-1]:
                w.f64(float(x))
    return w.string(), header_bits, len(w) - header_bits


def fixed_bits(spec: PlanSpec, levels, dtype=np.float32, protocol: str = "dense", code: str = "gamma",
               crc: bool = False) -> dict:  # fmt: skip
    """Header and level-table bits of a fully self-describing message (no payload, no norms)."""
    _, h, t = _header(PROTOCOLS.index(protocol), code_id(code), dtype, spec, levels, [True] * len(levels), crc)
    return {"header": h, "level_tables": t}


def _crc_field(data: bytes) -> int:
    """The 32 bits at :data:`_CRC_AT` of ``data`` (at least 7 bytes)."""
    return (int.from_bytes(data[:7], "big") >> (56 - _CRC_AT - _CRC_BITS)) & 0xFFFFFFFF


def _with_crc_field(data: bytes, value: int) -> bytes:
    """``data`` with the CRC field set to ``value``."""
    shift = 56 - _CRC_AT - _CRC_BITS
    head = int.from_bytes(data[:7], "big") & ~(0xFFFFFFFF << shift) | (value << shift)
    return head.to_bytes(7, "big") + data[7:]


def _crc32(data: bytes) -> int:
    """CRC-32 of ``data`` with its CRC field zeroed."""
    return zlib.crc32(_with_crc_field(data, 0)) & 0xFFFFFFFF


def _groups_of(spec: PlanSpec) -> int:
    """Number of norm groups a spec implies, by arithmetic (before any plan is built)."""
    lay = spec.layout
    if spec.scope == "global":
        return -(-lay.d // spec.global_bucket) if spec.global_bucket else 1
    buckets = np.asarray(spec.type_bucket, np.int64)[lay.types]
    sizes = lay.sizes
    return int(np.sum(np.where(buckets > 0, -(-sizes // np.maximum(buckets, 1)), 1)))


_NO_BYTES = np.zeros(0, np.uint8)


class Encoder:
    """Stateful sender: sends the spec and each type's levels only when they change.

    Parameters
    ----------
    protocol : {"dense", "sparse"}
    code : {"gamma", "delta", "omega"}
    crc : bool
        Add a CRC-32 of the whole message (33 header bits; see the module docstring).
    """

    def __init__(self, protocol: str = "dense", code: str = "gamma", crc: bool = False):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if not isinstance(crc, (bool, np.bool_)):
            raise TypeError(f"crc must be True or False, got {crc!r}")
        self.protocol, self.code, self.crc = protocol, code, bool(crc)
        self._code = code_id(code)
        self._spec: PlanSpec | None = None
        self._levels: dict[int, Levels] = {}
        self._steady: tuple | None = None  # the steady-state header's pieces, see _head

    def reset(self) -> None:
        """Forget the channel state (the next message is fully self-describing)."""
        self._spec, self._levels, self._steady = None, {}, None

    def encode(self, qv: QuantizedVector) -> Message:
        """The bit stream of ``qv`` (a :class:`~qodasim.coding.Message`), bits counted from the stream.

        Level tables are sent only when they differ from the last ones this encoder sent (THEORY §3)."""
        if not isinstance(qv, QuantizedVector):
            raise TypeError(f"qv must be a QuantizedVector, got {type(qv).__name__}")
        qv.validate()
        head_bytes, acc, tail_len, head_len, header_bits, table_bits, max_index = self._head(qv)
        nfull = head_bytes.size
        cap = (head_len + _payload.max_body_bits(qv.d, qv.norms.size, max_index, self._proto_id, self._code)) // 8
        buf = np.zeros(cap + 16, np.uint8)
        buf[:nfull] = head_bytes
        norm_bits = np.ascontiguousarray(qv.norms, np.float32).view(np.uint32).astype(np.int64)
        acc, nacc, pos, norm_end = _payload.encode_body(
            buf, acc, tail_len, nfull, norm_bits, qv.indices, qv.signs, self._proto_id, self._code, max_index
        )
        nbits = int(pos) * 8 + int(nacc)
        nbytes = _bits.flush(buf, np.uint64(acc), nacc, pos)
        self._commit(qv.plan.spec, qv.levels)
        data = buf[:nbytes].tobytes()
        if self.crc:
            data = _with_crc_field(data, _crc32(data))
        bits = {
            "header": header_bits,
            "level_tables": table_bits,
            "norms": int(norm_end) - head_len,
            "payload": nbits - int(norm_end),
        }
        return Message(data, nbits, bits)

    def _head(self, qv: QuantizedVector) -> tuple:
        """``(whole header bytes, tail bits as the accumulator, tail length, header length, header bits,
        table bits, max index)`` of ``qv``'s message.  In the steady state — the same spec and level
        objects as the last message, so nothing is resent — the pieces are reused (the same bits:
        the header then depends on the dtype and this encoder's settings only)."""
        st, spec, levels = self._steady, qv.plan.spec, qv.levels
        if (st is not None and st[0] is spec and len(st[1]) == len(levels)
                and all(a is b for a, b in zip(st[1], levels)) and st[2] == qv.dtype):  # fmt: skip
            return st[3]
        send_spec = spec != self._spec
        known = {} if send_spec else self._levels
        send = [known.get(m) != lv for m, lv in enumerate(levels)]
        head, header_bits, table_bits = _header(self._proto_id, self._code, qv.dtype, spec if send_spec else None,
                                                levels, send, self.crc)  # fmt: skip
        nfull = len(head) // 8
        tail = head[nfull * 8 :]
        head_bytes = np.frombuffer(int(head[: nfull * 8], 2).to_bytes(nfull, "big"), np.uint8) if nfull else _NO_BYTES
        pieces = (head_bytes, np.uint64(int(tail, 2) if tail else 0), len(tail), len(head), header_bits, table_bits,
                  max(lv.size - 1 for lv in levels))  # fmt: skip
        if send_spec or any(send):
            self._steady = None
        else:
            self._steady = (spec, tuple(levels), qv.dtype, pieces)
        return pieces

    @property
    def _proto_id(self) -> int:
        return PROTOCOLS.index(self.protocol)

    def _header_for(self, spec: PlanSpec, levels, dtype):
        send_spec = spec != self._spec
        known = {} if send_spec else self._levels
        send = [known.get(m) != lv for m, lv in enumerate(levels)]
        return _header(self._proto_id, self._code, dtype, spec if send_spec else None, levels, send, self.crc)

    def _commit(self, spec: PlanSpec, levels) -> None:
        self._spec = spec
        self._levels = dict(enumerate(levels))

    def account(self, spec: PlanSpec, levels, dtype=np.float64) -> dict:
        """Header and level-table bits the next message on this channel would carry (and update the
        channel state as if it had been sent) — for bit accounting with exact expected payloads."""
        _, header_bits, table_bits = self._header_for(spec, tuple(levels), dtype)
        self._commit(spec, tuple(levels))
        return {"header": header_bits, "level_tables": table_bits}


class Decoder:
    """Stateful receiver matching :class:`Encoder`: remembers the last spec and level tables.

    Parameters
    ----------
    max_d : int
        Largest dimension accepted (default :data:`MAX_D`); a header claiming more is a
        :class:`DecodeError` before anything is allocated.
    require_crc : bool
        Refuse messages without a CRC.
    max_types : int
        Most layer types a header may declare (default :data:`MAX_TYPES`).
    """

    def __init__(self, max_d: int = MAX_D, require_crc: bool = False, max_types: int = MAX_TYPES):
        for name, val in (("max_d", max_d), ("max_types", max_types)):
            check_int(val, name, 1, what="a positive integer")
        self.max_d, self.max_types = int(max_d), int(max_types)
        self.require_crc = bool(require_crc)
        self._spec: PlanSpec | None = None
        self._levels: dict[int, Levels] = {}

    def decode(self, message, key: Key | None = None) -> QuantizedVector:
        """Decode a :class:`Message` (or its bytes) into the exact :class:`QuantizedVector`.

        Raises :class:`DecodeError` for anything that is not a valid message (truncated, flipped
        bits that break the structure or the CRC, wrong magic or version, absurd lengths, trailing
        data).  Nothing proportional to ``d`` is allocated before the header has been checked
        against the stream's length and ``max_d``.
        """
        data = message.data if isinstance(message, Message) else message
        buf = slack_buffer(data)
        total = (buf.size - SLACK) * 8
        r = _Reader(buf, total)
        proto, code, dtype, has_spec = self._read_head(r, buf, total)
        spec, levels, type_levels = self._spec_and_levels(r, has_spec)
        plan = _plan_with_room(spec, proto, r)
        idx, sign, norms = _read_body(buf, r.pos, total, plan, proto, code, type_levels)
        self._spec, self._levels = spec, levels
        return QuantizedVector._trusted(idx, sign, norms, plan, type_levels, np.dtype(dtype), key)

    def _read_head(self, r: _Reader, buf: np.ndarray, total: int) -> tuple:
        """``(protocol, code, dtype, has_spec)`` from the fixed header; the CRC checked when present
        (and required when this decoder requires one)."""
        if total < _CRC_AT:
            raise DecodeError("message too short for a header")
        if r.uint(8) != MAGIC:
            raise DecodeError("not a qodasim message (bad magic byte)")
        version = r.uint(4)
        if version != VERSION:
            raise DecodeError(f"unsupported message version {version} (this decoder reads version {VERSION})")
        proto = r.uint(2)
        code = r.uint(2)
        if proto > 1 or code > 2:
            raise DecodeError(f"header: unknown protocol {proto} or code {code}")
        dtype = np.float64 if r.uint(1) else np.float32
        has_spec = r.uint(1)
        if r.uint(1):
            raw = bytes(buf[: total // 8])
            if total < _CRC_AT + _CRC_BITS:
                raise DecodeError("message too short for its CRC")
            if _crc_field(raw) != _crc32(raw):
                raise DecodeError("integrity check failed (CRC-32 mismatch)")
            r.uint(_CRC_BITS)
        elif self.require_crc:
            raise DecodeError("message has no CRC and this decoder requires one")
        return proto, code, dtype, has_spec

    def _spec_and_levels(self, r: _Reader, has_spec: int) -> tuple:
        """``(spec, levels by type, levels in type order)``: read from the message or kept from the
        channel's last message, each type's table read when its flag is set."""
        if has_spec:
            spec = _read_spec(r, self.max_d, self.max_types)
            levels: dict[int, Levels] = {}
        else:
            if self._spec is None:
                raise DecodeError("message refers to a layout, but none was received on this channel")
            spec, levels = self._spec, dict(self._levels)
        m = spec.layout.n_types
        flags = [r.uint(1) for _ in range(m)]
        for t in range(m):
            if flags[t]:
                levels[t] = _read_levels(r)
            elif t not in levels:
                raise DecodeError(f"message refers to the levels of type {t}, but none were received")
        return spec, levels, tuple(levels[t] for t in range(m))


def _plan_with_room(spec: PlanSpec, proto: int, r: _Reader):
    """The plan of ``spec`` once the stream is known to hold its norms (and, dense, a bit per
    coordinate): nothing proportional to ``d`` is built for a message too short for it."""
    d, n_groups = spec.layout.d, _groups_of(spec)
    if n_groups * 32 > r.remaining():
        raise DecodeError(f"stream is truncated: {n_groups} norms cannot fit in {r.remaining()} bits")
    if proto == 0 and d > r.remaining() - 32 * n_groups:  # a dense coordinate costs at least one bit
        raise DecodeError(f"stream is truncated: {d} dense coordinates cannot fit in the message")
    try:
        return cached_plan(spec)
    except ValueError as exc:
        raise DecodeError(f"header: {exc}") from None


def _read_body(buf: np.ndarray, pos: int, total: int, plan, proto: int, code: int, type_levels: tuple):
    """``(indices, signs, float32 norms)`` of the payload from bit ``pos``; nothing may follow it but
    the last byte's zero padding."""
    type_max = np.array([lv.size - 1 for lv in type_levels], np.int64)
    index_dtype = max((lv.index_dtype for lv in type_levels), key=lambda dt: dt.itemsize)
    idx = np.zeros(plan.d, index_dtype)
    sign = np.ones(plan.d, np.int8)
    norm_bits = np.zeros(plan.n_groups, np.uint32)
    pos, err = _payload.decode_body(
        buf, pos, total, plan.n_groups, proto, code, plan.seg_bounds, plan.seg_type, type_max, norm_bits, idx, sign,
    )  # fmt: skip
    if err:
        raise DecodeError(_bits.ERROR_TEXT[err])
    if total - pos >= 8 or (total > pos and _bits.peek(buf, pos, total - pos) != 0):
        raise DecodeError("trailing data after the payload")
    norms = norm_bits.view(np.float32)
    if not np.all(np.isfinite(norms)) or np.any(norms < 0):
        raise DecodeError("norms must be finite and non-negative")
    return idx, sign, norms.copy()


def encode(qv: QuantizedVector, protocol: str = "dense", code: str = "gamma", *, crc: bool = False) -> Message:
    """Encode one self-describing message (spec and level tables included; a CRC-32 with ``crc=True``).

    Examples
    --------
    >>> import numpy as np
    >>> from qodasim import Key, Levels, Quantizer
    >>> from qodasim.coding import decode, encode
    >>> qv = Quantizer(Levels.uniform(4)).quantize(np.array([0.3, -0.4, 0.0, 1.2]), Key(0))
    >>> msg = encode(qv, code="gamma")
    >>> msg.bits  # counted from the stream itself
    {'header': 34, 'level_tables': 7, 'norms': 32, 'payload': 15}
    >>> decode(msg).equals(qv)
    True
    """
    return Encoder(protocol, code, crc).encode(qv)


def decode(message, key: Key | None = None, *, max_d: int = MAX_D, require_crc: bool = False) -> QuantizedVector:
    """Decode one self-describing message (see :meth:`Decoder.decode`).

    Examples
    --------
    >>> import numpy as np
    >>> from qodasim import Key, Levels, Quantizer
    >>> from qodasim.coding import decode, encode
    >>> qv = Quantizer(Levels.exponential(3), q=np.inf).quantize(np.arange(-3.0, 4.0), Key(5))
    >>> decode(encode(qv, "sparse", "omega", crc=True), require_crc=True).equals(qv)
    True
    """
    return Decoder(max_d, require_crc).decode(message, key)
