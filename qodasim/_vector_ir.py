"""LLVM IR pieces shared by the vector intrinsics (private): 8-lane types, loads, stores, broadcasts.

Used by :mod:`qodasim.quantize._simd` and :mod:`qodasim.optimize._argmin`; unaligned accesses
(``align=8``: a float64 array's own alignment).
"""

from __future__ import annotations

from llvmlite import ir

F64 = ir.DoubleType()
I64 = ir.IntType(64)
I32 = ir.IntType(32)
V8D = ir.VectorType(F64, 8)
V8I = ir.VectorType(I64, 8)


def array_data(context, builder, types, values):
    """The data pointers of Numba arrays (their types and LLVM values)."""
    return [context.make_array(t)(context, builder, a).data for t, a in zip(types, values)]


def vload(builder, ptr, off, vt):
    """``vt`` (a vector type) loaded from ``ptr[off:]``."""
    return builder.load(builder.bitcast(builder.gep(ptr, [off]), vt.as_pointer()), align=8)


def vstore(builder, val, ptr, off):
    """The vector ``val`` stored at ``ptr[off:]``."""
    builder.store(val, builder.bitcast(builder.gep(ptr, [off]), val.type.as_pointer()), align=8)


def splat(builder, x, vt):
    """The scalar ``x`` in every lane of a vector of type ``vt``."""
    lane0 = builder.insert_element(ir.Constant(vt, ir.Undefined), x, ir.Constant(I32, 0))
    zeros = ir.Constant(ir.VectorType(I32, vt.count), [0] * vt.count)
    return builder.shuffle_vector(lane0, ir.Constant(vt, ir.Undefined), zeros)
