"""First strict minimum of a float64 array in vector registers (private; a Numba intrinsic for the DP).

The scan ``best = ∞; for q: if v[q] < best: best, arg = v[q], q`` is one long dependency chain (a
compare and a select per element, ~4 cycles each) and LLVM does not vectorize a float ``min``
without fast-math.  :func:`first_min8` runs the same scan in 8 lanes — lane ``l`` sees
``v[l], v[l + 8], …`` in order and keeps its own first strict minimum — then combines the lanes:
the smallest value under ``<``, and among the lanes holding a value equal to it the smallest
index.  That is the first index at which the sequence reaches its minimum, which is what the serial
scan returns (NaNs never win in either; ``+0`` and ``−0`` are equal in both, and the caller reads the
value at the returned index, so even its sign is the serial scan's).  Tested against the serial scan
on tie-heavy arrays.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._vector_ir import F64, I32, I64, V8D, V8I, array_data, splat, vload

_NONE = (1 << 63) - 1  # no index yet


@intrinsic
def first_min8(typingctx, vals, n):
    """``first_min8(vals, n)``: the first index of the minimum of ``vals[: n − n % 8]`` under ``<``
    (float64 array, ``n`` int64), or ``−1`` when no element is ``< +∞`` there.  The caller continues
    the serial scan over the last ``n % 8`` elements (larger indices: an equal value there never wins).
    """

    def codegen(context, builder, signature, args):
        (data,) = array_data(context, builder, signature.args[:1], args[:1])
        full = builder.and_(args[1], ir.Constant(I64, -8))
        best_p = cgutils.alloca_once_value(builder, ir.Constant(V8D, [float("inf")] * 8))
        arg_p = cgutils.alloca_once_value(builder, ir.Constant(V8I, [0] * 8))
        lanes = ir.Constant(V8I, list(range(8)))
        with cgutils.for_range_slice(builder, ir.Constant(I64, 0), full, ir.Constant(I64, 8)) as (p, _):
            v = vload(builder, data, p, V8D)
            best, arg = builder.load(best_p), builder.load(arg_p)
            less = builder.fcmp_ordered("<", v, best)
            builder.store(builder.select(less, v, best), best_p)
            builder.store(builder.select(less, builder.add(lanes, splat(builder, p, V8I)), arg), arg_p)
        best, arg = builder.load(best_p), builder.load(arg_p)
        # combine: m = min under <, then the smallest index among lanes equal to m (−1: none below ∞)
        m = builder.extract_element(best, ir.Constant(I32, 0))
        for lane in range(1, 8):
            b = builder.extract_element(best, ir.Constant(I32, lane))
            m = builder.select(builder.fcmp_ordered("<", b, m), b, m)
        out = ir.Constant(I64, _NONE)
        for lane in range(8):
            b = builder.extract_element(best, ir.Constant(I32, lane))
            a = builder.extract_element(arg, ir.Constant(I32, lane))
            take = builder.and_(builder.fcmp_ordered("==", b, m), builder.icmp_signed("<", a, out))
            out = builder.select(take, a, out)
        finite = builder.fcmp_ordered("<", m, ir.Constant(F64, float("inf")))
        return builder.select(finite, out, ir.Constant(I64, -1))

    return types.int64(vals, n), codegen
