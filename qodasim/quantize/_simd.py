"""Vector interval search for at most 16 levels (private; a Numba intrinsic, used by :mod:`._numba`).

LLVM emits no gathers for the project's CPUs (on ``znver4`` they are microcoded, on Intel they are
marked slow since the Gather Data Sampling fix), so a table lookup per coordinate stays scalar
(BENCHMARKS.md).  With at most 16 levels the whole level table fits in two vector
registers, and AVX-512's two-source permute ``vpermi2pd`` looks up 8 coordinates' levels at once.
:func:`search16` runs the branch-free binary search

``j = 0;  for h in (8, 4, 2, 1):  j ← j + h  if  S[j + h] ≤ r``

over ``S = (ℓ_0, …, ℓ_{nl−2}, +∞, …)`` — the largest ``j ∈ [0, nl − 2]`` with ``ℓ_j ≤ r``, exactly
:func:`._scalar.split`'s interval (``S`` is non-decreasing, ``S[0] = 0 ≤ r``, and the ``+∞`` padding
is never ``≤ r``) — then reads ``ℓ_j`` and ``ℓ_{j+1}`` from ``V = (ℓ_0, …, ℓ_{nl−1}, …)``: the same
floats as a scalar lookup, so the rounding is bit for bit the same (tested against ``split`` for every
level count).  (Carrying ``ℓ_j`` and ``ℓ_{j+1}`` along the search instead of the two final lookups
measured slower: more selects than permutes saved.)

With AVX2 but not AVX-512 (the target's features, read when the kernel is compiled) the search runs
on vectors of 4: AVX2's ``vpermps`` looks up 4 doubles (as pairs of 32-bit words) in one register, so
each step reads its candidates from a table of exactly the candidates it can meet —
``S[8]``; ``S[4]`` or ``S[12]`` (a select); ``(S[2], S[6], S[10], S[14])`` at ``j/4``;
``(S[1], S[3], …, S[15])`` at ``j/2`` (two registers and a select).  ``ℓ_j`` and ``ℓ_{j+1}`` are
carried along by selects instead of looked up: ``ℓ_j`` is the last accepted candidate (``S[0]`` if
none), ``ℓ_{j+1}`` the last rejected one — the final ``j + 1`` is always tested (at the step of
``j``'s lowest zero bit) and every later step accepts — except that a rejected ``S[nl − 1] = +∞``
stands for ``ℓ_{nl−1}``, read as the largest entry of ``V`` (so ``V``'s entries past ``ℓ_{nl−1}`` must
not exceed it: zeros).  The same ``j`` and the same floats (tested against the per-lane lookups).
Without AVX2 the lookups are per-lane element extractions.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._vector_ir import F64, I32, I64, V8D, V8I, array_data, vload, vstore

#: The most levels :func:`search16` handles (the table is two registers of 8 doubles).
MAX_LEVELS = 16
#: Vectors of 8 per loop iteration (independent search chains overlap: measured 0.62 → 0.55 ns/coord).
UNROLL = 4
#: :func:`search16` works on whole groups of this many coordinates.
GROUP = 8 * UNROLL


def target_has(context, feature: str) -> bool:
    """Whether the CPU target Numba compiles for has ``feature`` (an LLVM name: ``"avx512f"``)."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return f"+{feature}" in features.split(",")


def has_vector_permute(context) -> bool:
    """Whether the CPU target compiles for AVX-512F (``vpermi2pd``)."""
    return target_has(context, "avx512f")


def _emit_search(context, builder, signature, args, permute: bool):
    rr, S, V, jj, l0, l1 = array_data(context, builder, signature.args[:6], args[:6])
    n = args[6]
    zero, eight = ir.Constant(I64, 0), ir.Constant(I64, 8)
    S0, S1 = vload(builder, S, zero, V8D), vload(builder, S, eight, V8D)
    V0, V1 = vload(builder, V, zero, V8D), vload(builder, V, eight, V8D)
    if permute:
        fnty = ir.FunctionType(V8D, [V8D, V8I, V8D])
        perm = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx512.vpermi2var.pd.512")

        def lookup(lo, hi, idx):
            return builder.call(perm, [lo, idx, hi])  # lanes: (idx & 15) < 8 ? lo[idx] : hi[idx − 8]
    else:
        joined = ir.Constant(ir.VectorType(I32, 16), list(range(16)))

        def lookup(lo, hi, idx):
            t16, out = builder.shuffle_vector(lo, hi, joined), ir.Constant(V8D, ir.Undefined)
            for lane in range(8):
                k = builder.extract_element(idx, ir.Constant(I32, lane))
                out = builder.insert_element(out, builder.extract_element(t16, k), ir.Constant(I32, lane))
            return out

    one = ir.Constant(V8I, [1] * 8)
    with cgutils.for_range_slice(builder, zero, n, ir.Constant(I64, 8 * UNROLL)) as (p0, _):
        # UNROLL independent vectors per iteration: their search chains overlap
        offs = [builder.add(p0, ir.Constant(I64, 8 * u)) for u in range(UNROLL)]
        rs = [vload(builder, rr, off, V8D) for off in offs]
        js = [ir.Constant(V8I, [0] * 8)] * UNROLL
        for h in (8, 4, 2, 1):
            for u in range(UNROLL):
                c = builder.add(js[u], ir.Constant(V8I, [h] * 8))
                js[u] = builder.select(builder.fcmp_ordered("<=", lookup(S0, S1, c), rs[u]), c, js[u])
        for off, j in zip(offs, js):
            vstore(builder, j, jj, off)
            vstore(builder, lookup(V0, V1, j), l0, off)
            vstore(builder, lookup(V0, V1, builder.add(j, one)), l1, off)
    return context.get_dummy_value()


V4D = ir.VectorType(F64, 4)
V4I = ir.VectorType(I64, 4)
_V8F = ir.VectorType(ir.FloatType(), 8)
_V8W = ir.VectorType(I32, 8)
#: Vectors of 4 per loop iteration of the AVX2 search (with 2, 4, 8 the non-uniform rounding took 2.64,
#: 2.69–3.03, 2.90 ns/coord on one thread: fewer values live in 16 registers); arrays still in GROUPs.
UNROLL_AVX2 = 2


def _emit_search_avx2(context, builder, signature, args):
    rr, S, V, jj, l0, l1 = array_data(context, builder, signature.args[:6], args[:6])
    n = args[6]

    def shuffle(a, b, lanes):  # lanes 0..3 of a, then 4..7 of b
        return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(I32, len(lanes)), lanes))

    def k4(x):
        return ir.Constant(V4I, [x] * 4)

    def vmax(a, b):
        return builder.select(builder.fcmp_ordered(">", a, b), a, b)

    Sq = [vload(builder, S, ir.Constant(I64, 4 * q), V4D) for q in range(4)]  # S[4q .. 4q + 3]
    Vq = [vload(builder, V, ir.Constant(I64, 4 * q), V4D) for q in range(4)]
    top = vmax(vmax(Vq[0], Vq[1]), vmax(Vq[2], Vq[3]))
    top = vmax(top, shuffle(top, top, [2, 3, 0, 1]))
    top = vmax(top, shuffle(top, top, [1, 0, 3, 2]))  # ℓ_{nl−1} in every lane
    T2 = shuffle(shuffle(Sq[0], Sq[1], [2, 6, 0, 0]), shuffle(Sq[2], Sq[3], [2, 6, 0, 0]), [0, 1, 4, 5])
    T1 = [shuffle(Sq[0], Sq[1], [1, 3, 5, 7]), shuffle(Sq[2], Sq[3], [1, 3, 5, 7])]  # S[1], S[3], …
    S0, S4, S8, S12 = (shuffle(Sq[q], Sq[q], [0] * 4) for q in range(4))
    T2w, T1w0, T1w1 = (builder.bitcast(x, _V8F) for x in [T2, *T1])
    fnty = ir.FunctionType(_V8F, [_V8F, _V8W])
    permps = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx2.permps")
    inf = ir.Constant(V4D, [float("inf")] * 4)

    def pairs(q):  # the 32-bit word indices (2q, 2q + 1) of double q; vpermps reads their low 3 bits
        a = builder.shl(q, k4(1))
        return builder.bitcast(builder.or_(a, builder.shl(builder.or_(a, k4(1)), k4(32))), _V8W)

    def lookup(table, idx):
        return builder.bitcast(builder.call(permps, [table, idx]), V4D)

    def bit(j, b):
        return builder.icmp_unsigned("!=", builder.and_(j, k4(b)), k4(0))

    def step(state, candidate, r, h):
        j, lo, hi = state
        m = builder.fcmp_ordered("<=", candidate, r)
        j = builder.or_(j, builder.select(m, k4(h), k4(0)))
        return j, builder.select(m, candidate, lo), builder.select(m, hi, candidate)

    def odd(j):
        idx = pairs(builder.lshr(j, k4(1)))
        return builder.select(bit(j, 8), lookup(T1w1, idx), lookup(T1w0, idx))

    with cgutils.for_range_slice(builder, ir.Constant(I64, 0), n, ir.Constant(I64, 4 * UNROLL_AVX2)) as (p0, _):
        offs = [builder.add(p0, ir.Constant(I64, 4 * u)) for u in range(UNROLL_AVX2)]
        rs = [vload(builder, rr, off, V4D) for off in offs]
        sts = [step((k4(0), S0, inf), S8, r, 8) for r in rs]
        sts = [step(st, builder.select(bit(st[0], 8), S12, S4), r, 4) for st, r in zip(sts, rs)]
        sts = [step(st, lookup(T2w, pairs(builder.lshr(st[0], k4(2)))), r, 2) for st, r in zip(sts, rs)]
        sts = [step(st, odd(st[0]), r, 1) for st, r in zip(sts, rs)]
        for off, (j, lo, hi) in zip(offs, sts):
            vstore(builder, j, jj, off)
            vstore(builder, lo, l0, off)
            vstore(builder, builder.select(builder.fcmp_ordered("==", hi, inf), top, hi), l1, off)
    return context.get_dummy_value()


def _codegen(kind):
    def codegen(context, builder, signature, args):
        use = kind
        if use is None:
            use = "avx512" if has_vector_permute(context) else "avx2" if target_has(context, "avx2") else "lanes"
        if use == "avx2":
            return _emit_search_avx2(context, builder, signature, args)
        return _emit_search(context, builder, signature, args, use == "avx512")

    return codegen


@intrinsic
def search16(typingctx, rr, S, V, jj, l0, l1, n):
    """``search16(rr, S, V, jj, l0, l1, n)``: for ``p < n``, ``jj[p]`` = the interval of ``rr[p]``
    (float64) and ``l0[p], l1[p]`` its end levels; ``S``, ``V`` as in the module docstring (16 float64
    each; ``V`` zero past ``ℓ_{nl−1}``).  Works on whole groups of :data:`GROUP` coordinates: the
    arrays must hold ``n`` rounded up to a multiple of :data:`GROUP` (the entries past ``n`` are
    computed from whatever ``rr`` holds there and are never read)."""
    return types.void(rr, S, V, jj, l0, l1, n), _codegen(None)


@intrinsic
def search16_generic(typingctx, rr, S, V, jj, l0, l1, n):
    """:func:`search16` with the per-lane lookups forced (tested against the permute version)."""
    return types.void(rr, S, V, jj, l0, l1, n), _codegen("lanes")


@intrinsic
def search16_avx2(typingctx, rr, S, V, jj, l0, l1, n):
    """:func:`search16` with the AVX2 permutes forced (runs on any AVX2 CPU; tested like the others)."""
    return types.void(rr, S, V, jj, l0, l1, n), _codegen("avx2")


@intrinsic
def target_has_avx512dq(typingctx):
    """``True`` when the kernel is compiled for AVX-512DQ (packed float64 → uint64 conversion and
    64-bit multiplies), a compile-time constant: LLVM keeps only the branch it selects."""

    def codegen(context, builder, signature, args):
        return context.get_constant(types.boolean, target_has(context, "avx512dq"))

    return types.boolean(), codegen


@intrinsic
def double_of_bits(typingctx, x):
    """The float64 whose IEEE-754 bits are the uint64 ``x`` (a bit cast, no conversion)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], F64)

    return types.float64(types.uint64), codegen
