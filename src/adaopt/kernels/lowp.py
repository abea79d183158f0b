"""float16 and bfloat16 inside numba loops, as uint16 bit patterns.

numba has no float16 on the CPU and does not know ml_dtypes' bfloat16, so fused
kernels see such arrays as ``uint16`` and convert each element to float32 on load
and back on store. Both directions round to nearest, ties to even, exactly as
NumPy's and ml_dtypes' ``astype`` do, so the fused and reference paths agree bit
for bit.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def f16_to_f32(typingctx, x):
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return sig, codegen


@intrinsic
def f32_to_f16(typingctx, x):
    sig = types.uint16(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return sig, codegen


@intrinsic
def _f32_bits(typingctx, x):
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _bits_f32(typingctx, x):
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@njit(inline="always")
def bf16_to_f32(x):
    return _bits_f32(np.uint32(x) << np.uint32(16))


@njit(inline="always")
def f32_to_bf16(x):
    if x != x:  # NaN stays NaN (a quiet NaN pattern)
        return np.uint16(0x7FC0)
    bits = _f32_bits(x)
    bits = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return np.uint16(bits >> np.uint32(16))
