"""Vector interval search for at most 16 levels (private; a Numba intrinsic, used by :mod:`._numba`).

LLVM emits no gathers for the project's CPUs (on ``znver4`` they are microcoded, on Intel they are
marked slow since the Gather Data Sampling fix), so a table lookup per coordinate stays scalar
(BENCHMARKS.md, issue 15).  With at most 16 levels the whole level table fits in two vector
registers, and AVX-512's two-source permute ``vpermi2pd`` looks up 8 coordinates' levels at once.
:func:`search16` runs the branch-free binary search

``j = 0;  for h in (8, 4, 2, 1):  j ← j + h  if  S[j + h] ≤ r``

over ``S = (ℓ_0, …, ℓ_{nl−2}, +∞, …)`` — the largest ``j ∈ [0, nl − 2]`` with ``ℓ_j ≤ r``, exactly
:func:`._scalar.split`'s interval (``S`` is non-decreasing, ``S[0] = 0 ≤ r``, and the ``+∞`` padding
is never ``≤ r``) — then reads ``ℓ_j`` and ``ℓ_{j+1}`` from ``V = (ℓ_0, …, ℓ_{nl−1}, …)``: the same
floats as a scalar lookup, so the rounding is bit for bit the same (tested against ``split`` for every
level count).  (Carrying ``ℓ_j`` and ``ℓ_{j+1}`` along the search instead of the two final lookups
measured slower: more selects than permutes saved.)  Without AVX-512 (the target's features, read
when the kernel is compiled) the lookups are per-lane element extractions — the same results, no
speed-up.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._vector_ir import I32, I64, V8D, V8I, array_data, vload, vstore

#: The most levels :func:`search16` handles (the table is two registers of 8 doubles).
MAX_LEVELS = 16
#: Vectors of 8 per loop iteration (independent search chains overlap: measured 0.62 → 0.55 ns/coord).
UNROLL = 4
#: :func:`search16` works on whole groups of this many coordinates.
GROUP = 8 * UNROLL


def has_vector_permute(context) -> bool:
    """Whether the CPU target compiles for AVX-512F (``vpermi2pd``)."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return "+avx512f" in features.split(",")


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


def _codegen(permute):
    def codegen(context, builder, signature, args):
        use = has_vector_permute(context) if permute is None else permute
        return _emit_search(context, builder, signature, args, use)

    return codegen


@intrinsic
def search16(typingctx, rr, S, V, jj, l0, l1, n):
    """``search16(rr, S, V, jj, l0, l1, n)``: for ``p < n``, ``jj[p]`` = the interval of ``rr[p]``
    (float64) and ``l0[p], l1[p]`` its end levels; ``S``, ``V`` as in the module docstring (16 float64
    each).  Works on whole groups of :data:`GROUP` coordinates: the arrays must hold ``n`` rounded up
    to a multiple of :data:`GROUP` (the entries past ``n`` are computed from whatever ``rr`` holds
    there and are never read)."""
    return types.void(rr, S, V, jj, l0, l1, n), _codegen(None)


@intrinsic
def search16_generic(typingctx, rr, S, V, jj, l0, l1, n):
    """:func:`search16` with the per-lane lookups forced (tested against the permute version)."""
    return types.void(rr, S, V, jj, l0, l1, n), _codegen(False)
