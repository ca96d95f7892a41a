"""Numba bit-stream primitives and Elias γ/δ/ω codes (private; THEORY §3).

Bits are packed MSB-first into ``uint8`` buffers.  A writer's state is ``(acc, nacc, pos)``: the
pending bits in the low ``nacc`` (< 8) bits of ``acc`` and the next byte index ``pos``.  A reader's
state is a bit position; buffers handed to readers carry 8 zero bytes of slack after the data, and
every read is checked against the true bit count (buffers carry 16 bytes of slack, see
:func:`qodasim.coding.elias.slack_buffer`), so corrupt input can never read out of bounds.

All lengths use integer operations only (:func:`bitlen`, no float ``log2``).  Integers ``1 ≤ k ≤
2^62`` are supported; decoders return error codes instead of raising (kernels cannot raise cleanly).
"""

from __future__ import annotations

import numpy as np
from numba import njit

GAMMA, DELTA, OMEGA = 0, 1, 2
CODE_NAMES = {"gamma": GAMMA, "delta": DELTA, "omega": OMEGA}

# error codes returned by decoders
OK, E_TRUNCATED, E_OVERFLOW, E_RANGE, E_GAP = 0, 1, 2, 3, 4
ERROR_TEXT = {
    E_TRUNCATED: "stream is truncated",
    E_OVERFLOW: "Elias code word is longer than any integer below 2^62 allows",
    E_RANGE: "level index out of range for its type",
    E_GAP: "sparse gap points past the end of the vector",
}
MAX_BITS = 62  # largest N = ⌊log2 k⌋ accepted


def _codeword(code: int, k: int) -> str:
    """Elias ``code`` of ``k ≥ 1`` as a bit string (plain Python; builds the tables below)."""
    b = bin(k)[2:]
    if code == GAMMA:
        return "0" * (len(b) - 1) + b
    if code == DELTA:
        return _codeword(GAMMA, len(b)) + b[1:]
    out = "0"
    while k > 1:
        b = bin(k)[2:]
        out = b + out
        k = len(b) - 1
    return out


#: Small values take one table lookup: the code words of ``k < ENC_N`` (``(word, length)`` per code) ...
ENC_N = 1024
ENC_WORD = np.array([[int(_codeword(c, k), 2) if k else 0 for k in range(ENC_N)] for c in range(3)], np.int64)
ENC_LEN = np.array([[len(_codeword(c, k)) if k else 0 for k in range(ENC_N)] for c in range(3)], np.int64)
#: ... and the decoder peeks ``DEC_BITS`` bits: ``DEC[code, w] = k·32 + length`` of the code word that
#: starts ``w`` when it fits in ``DEC_BITS`` bits, else 0 (then the bit-by-bit reader decides).
DEC_BITS = 12


def _decode_table() -> np.ndarray:
    tab = np.zeros((3, 1 << DEC_BITS), np.int64)
    for c in range(3):
        for k in range(1, ENC_N):
            word = _codeword(c, k)
            if len(word) <= DEC_BITS:
                lo = int(word, 2) << (DEC_BITS - len(word))
                tab[c, lo : lo + (1 << (DEC_BITS - len(word)))] = k * 32 + len(word)
    return tab


DEC = _decode_table()


@njit(inline="always", cache=True)
def bitlen(x):
    """Number of binary digits of ``x ≥ 0`` (``bitlen(0) = 0``), by integer shifts."""
    x = np.uint64(x)
    n = 0
    if x >> np.uint64(32):
        x >>= np.uint64(32)
        n += 32
    if x >> np.uint64(16):
        x >>= np.uint64(16)
        n += 16
    if x >> np.uint64(8):
        x >>= np.uint64(8)
        n += 8
    if x >> np.uint64(4):
        x >>= np.uint64(4)
        n += 4
    if x >> np.uint64(2):
        x >>= np.uint64(2)
        n += 2
    if x >> np.uint64(1):
        x >>= np.uint64(1)
        n += 1
    return n + np.int64(x)


@njit(inline="always", cache=True)
def gamma_len(k):
    return 2 * (bitlen(k) - 1) + 1


@njit(inline="always", cache=True)
def delta_len(k):
    n = bitlen(k) - 1
    return n + 2 * (bitlen(n + 1) - 1) + 1


@njit(inline="always", cache=True)
def omega_len(k):
    total = 1
    while k > 1:
        nb = bitlen(k)
        total += nb
        k = nb - 1
    return total


@njit(inline="always", cache=True)
def code_len(code, k):
    """Length in bits of Elias ``code`` (0 γ, 1 δ, 2 ω) of ``k ≥ 1``."""
    if code == 0:
        return gamma_len(k)
    if code == 1:
        return delta_len(k)
    return omega_len(k)


# ----------------------------------------------------------------------------------------- writer
@njit(inline="always", cache=True)
def put(buf, acc, nacc, pos, value, n):
    """Append the low ``n ≤ 56`` bits of ``value`` (MSB first)."""
    if n == 0:
        return acc, nacc, pos
    acc = (acc << np.uint64(n)) | (np.uint64(value) & ((np.uint64(1) << np.uint64(n)) - np.uint64(1)))
    nacc += n
    while nacc >= 8:
        nacc -= 8
        buf[pos] = np.uint8((acc >> np.uint64(nacc)) & np.uint64(0xFF))
        pos += 1
    return acc, nacc, pos


@njit(cache=True)
def put_long(buf, acc, nacc, pos, value, n):
    """Append the low ``n ≤ 64`` bits of ``value``."""
    value = np.uint64(value)
    if n > 32:
        acc, nacc, pos = put(buf, acc, nacc, pos, value >> np.uint64(32), n - 32)
        n = 32
    return put(buf, acc, nacc, pos, value, n)


@njit(cache=True)
def put_zeros(buf, acc, nacc, pos, n):
    while n > 48:
        acc, nacc, pos = put(buf, acc, nacc, pos, 0, 48)
        n -= 48
    return put(buf, acc, nacc, pos, 0, n)


@njit(cache=True)
def put_code(buf, acc, nacc, pos, code, k):
    """Append Elias ``code`` of ``k ≥ 1`` (one table lookup for ``k <`` :data:`ENC_N`)."""
    if k < ENC_N:
        return put(buf, acc, nacc, pos, ENC_WORD[code, k], ENC_LEN[code, k])
    if code == 0:  # γ: N zeros then the N+1 digits of k
        n = bitlen(k) - 1
        acc, nacc, pos = put_zeros(buf, acc, nacc, pos, n)
        return put_long(buf, acc, nacc, pos, k, n + 1)
    if code == 1:  # δ: γ(N+1) then the low N digits of k
        n = bitlen(k) - 1
        m = bitlen(n + 1) - 1
        acc, nacc, pos = put_zeros(buf, acc, nacc, pos, m)
        acc, nacc, pos = put_long(buf, acc, nacc, pos, n + 1, m + 1)
        return put_long(buf, acc, nacc, pos, k, n)
    # ω: groups binary(k), binary(N), ... written outermost-last, then a 0
    vals = np.empty(8, np.int64)
    lens = np.empty(8, np.int64)
    g = 0
    while k > 1:
        nb = bitlen(k)
        vals[g] = k
        lens[g] = nb
        g += 1
        k = nb - 1
    for t in range(g - 1, -1, -1):
        acc, nacc, pos = put_long(buf, acc, nacc, pos, vals[t], lens[t])
    return put(buf, acc, nacc, pos, 0, 1)


@njit(cache=True)
def flush(buf, acc, nacc, pos):
    """Write the pending bits (zero-padded to a byte); returns the byte count."""
    if nacc > 0:
        buf[pos] = np.uint8((acc << np.uint64(8 - nacc)) & np.uint64(0xFF))
        pos += 1
    return pos


# ----------------------------------------------------------------------------------------- reader
@njit(inline="always", cache=True)
def peek(buf, pos, n):
    """The ``n ≤ 56`` bits at bit position ``pos`` (buffer has 8 bytes of slack)."""
    b = pos >> 3
    w = np.uint64(0)
    for t in range(8):
        w = (w << np.uint64(8)) | np.uint64(buf[b + t])
    w <<= np.uint64(pos & 7)
    if n == 0:
        return np.int64(0)
    return np.int64(w >> np.uint64(64 - n))


@njit(cache=True)
def get(buf, pos, total, n):
    """Read ``n ≤ 62`` bits; returns ``(value, pos, err)``."""
    if pos + n > total:
        return np.int64(0), pos, E_TRUNCATED
    if n > 48:
        hi = peek(buf, pos, n - 32)
        lo = peek(buf, pos + n - 32, 32)
        return (hi << 32) | lo, pos + n, OK
    return peek(buf, pos, n), pos + n, OK


@njit(cache=True)
def count_zeros(buf, pos, total):
    """Number of 0 bits before the next 1; returns ``(z, pos_after_zeros, err)``."""
    z = 0
    while True:
        avail = total - pos
        if avail <= 0:
            return z, pos, E_TRUNCATED
        n = 32 if avail > 32 else avail
        w = peek(buf, pos, n)
        if w == 0:
            z += n
            pos += n
            if z > MAX_BITS:
                return z, pos, E_OVERFLOW
            continue
        lz = n - bitlen(w)
        z += lz
        pos += lz
        if z > MAX_BITS:
            return z, pos, E_OVERFLOW
        return z, pos, OK


@njit(cache=True)
def get_code(buf, pos, total, code):  # noqa: C901 - a Numba kernel (one pass, its branches kept inline)
    """Decode one Elias code word; returns ``(k, pos, err)`` (a table lookup for short code words)."""
    e = DEC[code, peek(buf, pos, DEC_BITS)]
    if e != 0 and pos + (e & 31) <= total:
        return e >> 5, pos + (e & 31), OK
    if code == 0:
        n, pos, err = count_zeros(buf, pos, total)
        if err != OK:
            return np.int64(0), pos, err
        return get(buf, pos, total, n + 1)
    if code == 1:
        m, pos, err = count_zeros(buf, pos, total)
        if err != OK:
            return np.int64(0), pos, err
        if m > 6:  # N + 1 ≤ 63 needs m = ⌊log2(N+1)⌋ ≤ 5; 6 already overflows
            return np.int64(0), pos, E_OVERFLOW
        l1, pos, err = get(buf, pos, total, m + 1)
        if err != OK:
            return np.int64(0), pos, err
        n = l1 - 1
        if n > MAX_BITS:
            return np.int64(0), pos, E_OVERFLOW
        low, pos, err = get(buf, pos, total, n)
        if err != OK:
            return np.int64(0), pos, err
        return (np.int64(1) << n) | low, pos, OK
    k = np.int64(1)
    while True:
        bit, pos, err = get(buf, pos, total, 1)
        if err != OK:
            return np.int64(0), pos, err
        if bit == 0:
            return k, pos, OK
        if k > MAX_BITS:
            return np.int64(0), pos, E_OVERFLOW
        low, pos, err = get(buf, pos, total, k)
        if err != OK:
            return np.int64(0), pos, err
        k = (np.int64(1) << k) | low


# ----------------------------------------------------------------------------------------- arrays
@njit(cache=True)
def encode_ints(values, code):
    """Encode an int64 array (all ≥ 1) back to back; returns ``(buffer, nbits)``."""
    total = 0
    for i in range(values.size):
        total += code_len(code, values[i])
    buf = np.zeros((total + 7) // 8 + 16, np.uint8)
    acc, nacc, pos = np.uint64(0), 0, 0
    for i in range(values.size):
        acc, nacc, pos = put_code(buf, acc, nacc, pos, code, values[i])
    flush(buf, acc, nacc, pos)
    return buf[: (total + 7) // 8], total


@njit(cache=True)
def decode_ints(buf, nbits, count, code):
    """Decode ``count`` code words from a slack-padded buffer; returns ``(values, pos, err)``."""
    out = np.empty(count, np.int64)
    pos = 0
    for i in range(count):
        k, pos, err = get_code(buf, pos, nbits, code)
        if err != OK:
            return out[:i], pos, err
        out[i] = k
    return out, pos, OK


@njit(cache=True)
def code_lengths(values, code):
    out = np.empty(values.size, np.int64)
    for i in range(values.size):
        out[i] = code_len(code, values[i])
    return out
