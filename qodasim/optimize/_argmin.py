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

_F64 = ir.DoubleType()
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_V8D = ir.VectorType(_F64, 8)
_V8I = ir.VectorType(_I64, 8)
_I1 = ir.IntType(1)


@intrinsic
def first_min8(typingctx, vals, n):
    """``first_min8(vals, n)``: the first index of the minimum of ``vals[: n − n % 8]`` under ``<``
    (float64 array, ``n`` int64), or ``−1`` when no element is ``< +∞`` there.  The caller continues
    the serial scan over the last ``n % 8`` elements (larger indices: an equal value there never wins).
    """

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        n = args[1]
        full = builder.and_(n, ir.Constant(_I64, -8))
        best_p = cgutils.alloca_once_value(builder, ir.Constant(_V8D, [float("inf")] * 8))
        arg_p = cgutils.alloca_once_value(builder, ir.Constant(_V8I, [0] * 8))
        lanes = ir.Constant(_V8I, list(range(8)))
        with cgutils.for_range_slice(builder, ir.Constant(_I64, 0), full, ir.Constant(_I64, 8)) as (p, _):
            ptr = builder.bitcast(builder.gep(data, [p]), _V8D.as_pointer())
            v = builder.load(ptr, align=8)
            best, arg = builder.load(best_p), builder.load(arg_p)
            less = builder.fcmp_ordered("<", v, best)
            idx = builder.add(lanes, builder.shuffle_vector(
                builder.insert_element(ir.Constant(_V8I, ir.Undefined), p, ir.Constant(_I32, 0)),
                ir.Constant(_V8I, ir.Undefined), ir.Constant(ir.VectorType(_I32, 8), [0] * 8)))  # fmt: skip
            builder.store(builder.select(less, v, best), best_p)
            builder.store(builder.select(less, idx, arg), arg_p)
        best, arg = builder.load(best_p), builder.load(arg_p)
        # combine: m = min under <, then the smallest index among lanes equal to m (−1: none below ∞)
        m = builder.extract_element(best, ir.Constant(_I32, 0))
        for lane in range(1, 8):
            b = builder.extract_element(best, ir.Constant(_I32, lane))
            m = builder.select(builder.fcmp_ordered("<", b, m), b, m)
        out = ir.Constant(_I64, -1)
        finite = builder.fcmp_ordered("<", m, ir.Constant(_F64, float("inf")))
        for lane in range(7, -1, -1):
            b = builder.extract_element(best, ir.Constant(_I32, lane))
            a = builder.extract_element(arg, ir.Constant(_I32, lane))
            first = builder.or_(builder.icmp_signed("<", a, out), builder.icmp_signed("<", out, ir.Constant(_I64, 0)))
            take = builder.and_(builder.and_(builder.fcmp_ordered("==", b, m), finite), first)
            out = builder.select(take, a, out)
        return out

    return types.int64(vals, n), codegen
