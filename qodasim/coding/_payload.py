"""Numba kernels for message bodies: float32 norms, then the dense or sparse payload (private).

Dense (THEORY §3): per coordinate Elias(``j+1``), then a sign bit (1 = negative) if ``j > 0``.
Sparse (QSGD gap coding): per nonzero coordinate ``i`` Elias(``i − prev``) (``prev`` starts at −1),
a sign bit, Elias(``j``); the stream ends with Elias(``d − prev``), a gap landing exactly on ``d``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Numba's cache keys on this file alone: the kernels below compile in _bits.py's writers and readers, so
# a change there must touch this file too (or delete qodasim/**/__pycache__/*.nb*).
from ._bits import (
    DEC,
    DEC_BITS,
    E_GAP,
    E_RANGE,
    E_TRUNCATED,
    ENC_LEN,
    ENC_N,
    ENC_WORD,
    OK,
    bitlen,
    code_len,
    gamma_len,
    get,
    get_code,
    peek,
    put,
    put_code,
)

DENSE, SPARSE = 0, 1


@njit(cache=True)
def max_body_bits(d, n_norms, max_index, protocol, code):
    """An upper bound on the body's length, for allocation."""
    per_index = code_len(code, max_index + 1) + 1
    if protocol == DENSE:
        return 32 * n_norms + d * per_index
    per_gap = code_len(code, d + 1)
    return 32 * n_norms + d * (per_gap + per_index) + per_gap


@njit(cache=True)
def encode_body(buf, acc, nacc, pos, norm_bits, idx, sign, protocol, code, max_index):  # noqa: C901 - a Numba kernel (one pass, its branches kept inline)
    """Write norms and payload after a header; returns ``(acc, nacc, pos, norm_end_bit)``."""
    for g in range(norm_bits.size):
        acc, nacc, pos = put(buf, acc, nacc, pos, norm_bits[g], 32)
    norm_end = pos * 8 + nacc
    d = idx.size
    if code == 0 and max_index < 65535:
        if protocol == DENSE:
            acc, nacc, pos = encode_dense_gamma(buf, acc, nacc, pos, idx, sign, max_index)
        else:
            acc, nacc, pos = encode_sparse_gamma(buf, acc, nacc, pos, idx, sign, max_index)
        return acc, nacc, pos, norm_end
    if protocol == DENSE:
        for i in range(d):
            j = np.int64(idx[i])
            if j + 1 < ENC_N:  # index word and sign bit in one write (≤ 17 + 1 bits)
                n = ENC_LEN[code, j + 1]
                if j > 0:
                    word = (ENC_WORD[code, j + 1] << 1) | np.int64(sign[i] < 0)
                    acc, nacc, pos = put(buf, acc, nacc, pos, word, n + 1)
                else:
                    acc, nacc, pos = put(buf, acc, nacc, pos, ENC_WORD[code, 1], n)
                continue
            acc, nacc, pos = put_code(buf, acc, nacc, pos, code, j + 1)
            if j > 0:
                acc, nacc, pos = put(buf, acc, nacc, pos, np.int64(sign[i] < 0), 1)
    else:
        prev = -1
        for i in range(d):
            j = np.int64(idx[i])
            if j > 0:
                gap = i - prev
                neg = np.int64(sign[i] < 0)
                if gap < ENC_N and j < ENC_N:  # gap word, sign bit and index word in one write (≤ 2·17 + 1 bits)
                    lj = ENC_LEN[code, j]
                    word = (((ENC_WORD[code, gap] << 1) | neg) << lj) | ENC_WORD[code, j]
                    acc, nacc, pos = put(buf, acc, nacc, pos, word, ENC_LEN[code, gap] + 1 + lj)
                else:
                    acc, nacc, pos = put_code(buf, acc, nacc, pos, code, gap)
                    acc, nacc, pos = put(buf, acc, nacc, pos, neg, 1)
                    acc, nacc, pos = put_code(buf, acc, nacc, pos, code, j)
                prev = i
        acc, nacc, pos = put_code(buf, acc, nacc, pos, code, d - prev)
    return acc, nacc, pos, norm_end


@njit(cache=True)
def decode_body(buf, pos, total, n_norms, protocol, code, seg_bounds, seg_type, type_max, out_norm, out_idx, out_sign):  # noqa: C901 - a Numba kernel (one pass, its branches kept inline)
    """Read norms and payload; returns ``(pos, err)``.  ``out_idx``/``out_sign`` come zeroed / +1."""
    for g in range(n_norms):
        val, pos, err = get(buf, pos, total, 32)
        if err != OK:
            return pos, err
        out_norm[g] = np.uint32(val)
    d = out_idx.size
    nseg = seg_type.size
    if code == 0:
        if protocol == DENSE:
            return decode_dense_gamma(buf, pos, total, seg_bounds, seg_type, type_max, out_idx, out_sign)
        return decode_sparse_gamma(buf, pos, total, seg_bounds, seg_type, type_max, out_idx, out_sign)
    if protocol == DENSE:
        for s in range(nseg):
            mx = type_max[seg_type[s]]
            for i in range(seg_bounds[s], seg_bounds[s + 1]):
                if pos + DEC_BITS + 1 <= total:  # fast path: index word and sign bit from one window
                    w = peek(buf, pos, DEC_BITS + 1)
                    e = DEC[code, w >> 1]
                    if e != 0:
                        lk = e & 31
                        j = (e >> 5) - 1
                        if j > mx:
                            return pos + lk, E_RANGE
                        out_idx[i] = j
                        if j > 0:
                            if (w >> (DEC_BITS - lk)) & 1:
                                out_sign[i] = -1
                            lk += 1
                        pos += lk
                        continue
                k, pos, err = get_code(buf, pos, total, code)
                if err != OK:
                    return pos, err
                j = k - 1
                if j > mx:
                    return pos, E_RANGE
                out_idx[i] = j
                if j > 0:
                    b, pos, err = get(buf, pos, total, 1)
                    if err != OK:
                        return pos, err
                    if b == 1:
                        out_sign[i] = -1
        return pos, OK
    c = -1
    s = 0
    while True:
        if pos + 56 <= total:  # fast path: gap word, sign bit and index word from one 56-bit window
            w = peek(buf, pos, 56)
            e = DEC[code, w >> (56 - DEC_BITS)]
            if e != 0:
                lg = e & 31
                gap = e >> 5
                rest = 56 - lg - 1  # bits after the gap word and the sign bit (≥ 56 − 12 − 1)
                e2 = DEC[code, (w >> (rest - DEC_BITS)) & ((1 << DEC_BITS) - 1)]
                if e2 != 0 and gap <= d - c and c + gap < d:
                    c += gap
                    j = e2 >> 5
                    while seg_bounds[s + 1] <= c:
                        s += 1
                    if j > type_max[seg_type[s]]:
                        return pos + lg + 1 + (e2 & 31), E_RANGE
                    out_idx[c] = j
                    if (w >> rest) & 1:
                        out_sign[c] = -1
                    pos += lg + 1 + (e2 & 31)
                    continue
        gap, pos, err = get_code(buf, pos, total, code)
        if err != OK:
            return pos, err
        if gap > d - c:
            return pos, E_GAP
        c += gap
        if c == d:
            return pos, OK
        b, pos, err = get(buf, pos, total, 1)
        if err != OK:
            return pos, err
        j, pos, err = get_code(buf, pos, total, code)
        if err != OK:
            return pos, err
        while seg_bounds[s + 1] <= c:
            s += 1
        if j > type_max[seg_type[s]]:
            return pos, E_RANGE
        out_idx[c] = j
        if b == 1:
            out_sign[c] = -1


@njit(cache=True)
def dense_cost_table(max_index, code):
    """``cost[j] = len(Elias(j+1)) + [j > 0]`` for ``j = 0..max_index`` (dense bits of index j)."""
    out = np.empty(max_index + 1, np.int64)
    for j in range(max_index + 1):
        out[j] = code_len(code, j + 1) + (1 if j > 0 else 0)
    return out


@njit(cache=True)
def sparse_index_cost_table(max_index, code):
    """``cost[j] = [j > 0]·(1 + len(Elias(j)))`` (sparse bits of index j, its gap excluded)."""
    out = np.zeros(max_index + 1, np.int64)
    for j in range(1, max_index + 1):
        out[j] = 1 + code_len(code, j)
    return out


@njit(cache=True)
def gap_len_by_octave(code, n_octaves):
    """``len(Elias(g))`` for ``g ∈ [2^a, 2^{a+1})``, ``a = 0..n_octaves-1`` (it depends on ``a`` only)."""
    out = np.empty(n_octaves, np.int64)
    for a in range(n_octaves):
        out[a] = code_len(code, np.int64(1) << a)
    return out


# ------------------------------------------------------------------- fast Elias-γ paths
@njit(inline="always", cache=True)
def drain(buf, acc, nacc, pos):
    """Flush whole bytes so that ``nacc < 8`` (back to the generic writer's invariant)."""
    while nacc >= 8:
        nacc -= 8
        buf[pos] = np.uint8((acc >> np.uint64(nacc)) & np.uint64(0xFF))
        pos += 1
    return acc, nacc, pos


@njit(cache=True)
def gamma_table(max_k):
    """``(code, length)`` of Elias-γ for ``k = 0..max_k`` (entry 0 unused)."""
    lens = np.zeros(max_k + 1, np.int64)
    for k in range(1, max_k + 1):
        lens[k] = gamma_len(k)
    return lens


# The hot loops below inline their bit-writer by hand: Numba's ``inline="always"`` helper with a tuple
# return measured 6x slower here (51 ms vs 8 ms for 2^22 coordinates).
@njit(cache=True)
def encode_dense_gamma(buf, acc, nacc, pos, idx, sign, max_index):
    """Dense Elias-γ payload: one ≤ 32-bit append per coordinate (γ(j+1), then the sign if j > 0)."""
    lens = gamma_table(max_index + 1)
    acc = np.uint64(acc)
    nacc = np.int64(nacc)
    pos = np.int64(pos)
    for i in range(idx.size):
        j = np.int64(idx[i])
        k = j + 1
        extra = np.int64(j > 0)  # branch-free: the sign bit is appended only when j > 0
        value = np.uint64((k << extra) | (np.int64(sign[i] < 0) & extra))
        n = lens[k] + extra
        acc = (acc << np.uint64(n)) | value
        nacc += n
        if nacc >= 32:
            nacc -= 32
            w = acc >> np.uint64(nacc)
            buf[pos] = np.uint8((w >> np.uint64(24)) & np.uint64(0xFF))
            buf[pos + 1] = np.uint8((w >> np.uint64(16)) & np.uint64(0xFF))
            buf[pos + 2] = np.uint8((w >> np.uint64(8)) & np.uint64(0xFF))
            buf[pos + 3] = np.uint8(w & np.uint64(0xFF))
            pos += 4
    return drain(buf, acc, nacc, pos)


@njit(cache=True)
def encode_sparse_gamma(buf, acc, nacc, pos, idx, sign, max_index):
    """Sparse Elias-γ payload; a gap below 2^15 and its index/sign go in ≤ 32-bit appends."""
    lens = gamma_table(max_index)
    acc = np.uint64(acc)
    nacc = np.int64(nacc)
    pos = np.int64(pos)
    d = idx.size
    prev = -1
    for i in range(d):
        j = np.int64(idx[i])
        if j == 0:
            continue
        gap = i - prev
        prev = i
        if gap >= 32768:
            acc, nacc, pos = drain(buf, acc, nacc, pos)
            acc, nacc, pos = put_code(buf, acc, nacc, pos, 0, gap)
        else:
            n = 2 * (bitlen(gap) - 1) + 1
            acc = (acc << np.uint64(n)) | np.uint64(gap)
            nacc += n
            if nacc >= 32:
                nacc -= 32
                w = acc >> np.uint64(nacc)
                buf[pos] = np.uint8((w >> np.uint64(24)) & np.uint64(0xFF))
                buf[pos + 1] = np.uint8((w >> np.uint64(16)) & np.uint64(0xFF))
                buf[pos + 2] = np.uint8((w >> np.uint64(8)) & np.uint64(0xFF))
                buf[pos + 3] = np.uint8(w & np.uint64(0xFF))
                pos += 4
        n = lens[j] + 1
        acc = (acc << np.uint64(n)) | np.uint64((np.int64(sign[i] < 0) << lens[j]) | j)
        nacc += n
        if nacc >= 32:
            nacc -= 32
            w = acc >> np.uint64(nacc)
            buf[pos] = np.uint8((w >> np.uint64(24)) & np.uint64(0xFF))
            buf[pos + 1] = np.uint8((w >> np.uint64(16)) & np.uint64(0xFF))
            buf[pos + 2] = np.uint8((w >> np.uint64(8)) & np.uint64(0xFF))
            buf[pos + 3] = np.uint8(w & np.uint64(0xFF))
            pos += 4
    acc, nacc, pos = drain(buf, acc, nacc, pos)
    return put_code(buf, acc, nacc, pos, 0, d - prev)


@njit(cache=True)
def _window(buf, consumed):
    """A left-aligned 64-bit window at bit ``consumed``: ``(bitbuf, nb, p)`` with ``nb ≥ 57``."""
    p = consumed >> 3
    bitbuf = np.uint64(0)
    nb = 0
    while nb <= 56:
        bitbuf |= np.uint64(buf[p]) << np.uint64(56 - nb)
        p += 1
        nb += 8
    sh = consumed & 7
    return bitbuf << np.uint64(sh), nb - sh, p


@njit(cache=True)
def decode_dense_gamma(buf, pos, total, seg_bounds, seg_type, type_max, out_idx, out_sign):
    """Fast dense Elias-γ decoding with a 64-bit window (refill and leading-zero count inlined by
    hand); code words of 32 bits or more go through the checked reader.  Returns ``(pos, err)``.

    Reads never pass the slack: after each coordinate ``consumed ≤ total`` is checked, and a
    coordinate consumes at most 32 bits in the fast path."""
    consumed = pos
    bitbuf, nb, p = _window(buf, consumed)
    for s in range(seg_type.size):
        mx = type_max[seg_type[s]]
        for i in range(seg_bounds[s], seg_bounds[s + 1]):
            while nb <= 56:
                bitbuf |= np.uint64(buf[p]) << np.uint64(56 - nb)
                p += 1
                nb += 8
            top = bitbuf >> np.uint64(48)
            if top == 0:  # ≥ 16 leading zeros: a long code word, use the checked reader
                k, consumed, err = get_code(buf, consumed, total, 0)
                if err != OK:
                    return consumed, err
                bitbuf, nb, p = _window(buf, consumed)
            else:
                n = 7 - LOG2_16[top >> np.uint64(8)] if top >= np.uint64(256) else 15 - LOG2_16[top]
                ln = 2 * n + 1
                k = np.int64(bitbuf >> np.uint64(64 - ln))
                bitbuf <<= np.uint64(ln)
                nb -= ln
                consumed += ln
            j = k - 1
            if j > mx:
                return consumed, E_RANGE
            out_idx[i] = j
            if j > 0:
                if bitbuf >> np.uint64(63):
                    out_sign[i] = -1
                bitbuf <<= np.uint64(1)
                nb -= 1
                consumed += 1
            if consumed > total:
                return total, E_TRUNCATED
    return consumed, OK


@njit(cache=True)
def decode_sparse_gamma(buf, pos, total, seg_bounds, seg_type, type_max, out_idx, out_sign):  # noqa: C901 - a Numba kernel (one pass, its branches kept inline)
    """Fast sparse Elias-γ decoding (same window technique).  Returns ``(pos, err)``."""
    d = out_idx.size
    consumed = pos
    bitbuf, nb, p = _window(buf, consumed)
    c = -1
    s = 0
    while True:
        # gap
        while nb <= 56:
            bitbuf |= np.uint64(buf[p]) << np.uint64(56 - nb)
            p += 1
            nb += 8
        top = bitbuf >> np.uint64(48)
        if top == 0:
            gap, consumed, err = get_code(buf, consumed, total, 0)
            if err != OK:
                return consumed, err
            bitbuf, nb, p = _window(buf, consumed)
        else:
            n = 7 - LOG2_16[top >> np.uint64(8)] if top >= np.uint64(256) else 15 - LOG2_16[top]
            ln = 2 * n + 1
            gap = np.int64(bitbuf >> np.uint64(64 - ln))
            bitbuf <<= np.uint64(ln)
            nb -= ln
            consumed += ln
        if consumed > total:
            return total, E_TRUNCATED
        if gap > d - c:
            return consumed, E_GAP
        c += gap
        if c == d:
            return consumed, OK
        # sign, then γ(j)
        while nb <= 56:
            bitbuf |= np.uint64(buf[p]) << np.uint64(56 - nb)
            p += 1
            nb += 8
        neg = bitbuf >> np.uint64(63)
        bitbuf <<= np.uint64(1)
        nb -= 1
        consumed += 1
        top = bitbuf >> np.uint64(48)
        if top == 0:
            j, consumed, err = get_code(buf, consumed, total, 0)
            if err != OK:
                return consumed, err
            bitbuf, nb, p = _window(buf, consumed)
        else:
            n = 7 - LOG2_16[top >> np.uint64(8)] if top >= np.uint64(256) else 15 - LOG2_16[top]
            ln = 2 * n + 1
            j = np.int64(bitbuf >> np.uint64(64 - ln))
            bitbuf <<= np.uint64(ln)
            nb -= ln
            consumed += ln
        if consumed > total:
            return total, E_TRUNCATED
        while seg_bounds[s + 1] <= c:
            s += 1
        if j > type_max[seg_type[s]]:
            return consumed, E_RANGE
        out_idx[c] = j
        if neg:
            out_sign[c] = -1


#: ⌊log2 b⌋ for b = 1..255 (entry 0 unused): leading zeros of a 16-bit top without a loop.
LOG2_16 = np.array([0] + [b.bit_length() - 1 for b in range(1, 256)], np.int64)
