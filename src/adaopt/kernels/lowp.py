"""float16 and bfloat16 inside numba loops, as uint16 bit patterns.

numba has no float16 on the CPU and does not know ml_dtypes' bfloat16, so fused
kernels see such arrays as ``uint16`` and convert each element to float32 on load
and back on store. Both directions round to nearest, ties to even, exactly as
NumPy's and ml_dtypes' ``astype`` do, so the fused and reference paths agree bit
for bit.

float16 uses the CPU's conversion instructions (x86's F16C, ARM's FCVT) where the
compile target has them. Without them (a pre-2012 x86, QEMU's default CPU, or
``NUMBA_CPU_NAME=generic`` for caches shared between machines) LLVM would call
``__extendhfsf2``/``__truncsfhf2``, which numba's JIT leaves unresolved (the process
dies), so the conversion is done on the bits instead, as NumPy's own C code does it.
"""

import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .. import rounding
from ..rounding import GOLDEN32  # noqa: F401 (for the generated kernels)


@intrinsic
def _f16_to_f32_hw(typingctx, x):
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return sig, codegen


@intrinsic
def _f32_to_f16_hw(typingctx, x):
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


# The bfloat16 conversions are written in LLVM IR so that they stay 32 bits wide: numba
# widens integer arithmetic on uint16/uint32 to 64 bits, which halves a vector's lanes.


@intrinsic
def bf16_to_f32(typingctx, x):
    """bfloat16 bits (uint16) as the float32 they stand for (exact)."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        return builder.bitcast(builder.shl(builder.zext(args[0], i32), ir.Constant(i32, 16)), ir.FloatType())

    return sig, codegen


def _rne_bf16(builder, x):
    """IR for float32 ``x`` rounded to bfloat16's precision, nearest, ties to even: the i32 whose
    high half is the result (the low half to be dropped), and whether ``x`` is a NaN."""
    i32 = ir.IntType(32)
    bits = builder.bitcast(x, i32)
    odd = builder.and_(builder.lshr(bits, ir.Constant(i32, 16)), ir.Constant(i32, 1))
    rounded = builder.add(builder.add(bits, ir.Constant(i32, 0x7FFF)), odd)
    return rounded, builder.fcmp_unordered("uno", x, x)


@intrinsic
def f32_to_bf16(typingctx, x):
    """float32 to bfloat16 bits, round to nearest, ties to even; NaN gives the quiet NaN 0x7FC0."""
    sig = types.uint16(types.float32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        rounded, nan = _rne_bf16(builder, args[0])
        out = builder.lshr(rounded, ir.Constant(i32, 16))
        return builder.trunc(builder.select(nan, ir.Constant(i32, 0x7FC0), out), ir.IntType(16))

    return sig, codegen


@intrinsic
def round_bf16(typingctx, x):
    """float32 rounded to bfloat16's precision (nearest, ties to even; NaN gives 0x7FC00000),
    as a float32: :func:`f32_to_bf16` before the shift. The Kahan tail needs the rounded
    parameter both as bits to store (:func:`trunc_bf16` of this, exact) and as a number;
    widening the stored bits again cost AdamW's bf16 Kahan step about 9% in cache."""
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        rounded, nan = _rne_bf16(builder, args[0])
        out = builder.and_(rounded, ir.Constant(i32, -0x10000))
        return builder.bitcast(builder.select(nan, ir.Constant(i32, 0x7FC00000), out), ir.FloatType())

    return sig, codegen


@intrinsic
def trunc_bf16(typingctx, x):
    """float32 to bfloat16 bits rounded toward zero: the high half (NaN stays NaN)."""
    sig = types.uint16(types.float32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        return builder.trunc(builder.lshr(builder.bitcast(args[0], i32), ir.Constant(i32, 16)), ir.IntType(16))

    return sig, codegen


@intrinsic
def mul32(typingctx, a, b):
    """``a * b`` mod 2**32 on uint32."""
    sig = types.uint32(types.uint32, types.uint32)

    def codegen(context, builder, signature, args):
        return builder.mul(args[0], args[1])

    return sig, codegen


@intrinsic
def sr_bf16(typingctx, x, i, seed):
    """float32 ``x`` stochastically rounded to bfloat16 bits for element ``i`` (an int64 index)
    under the 32-bit ``seed`` (uint32): ``lowbias32(i * GOLDEN32 + seed)``'s lowest 16 bits
    added below the bfloat16 mantissa, then truncated, as :func:`adaopt.rounding.stochastic_bf16`
    does (NaN stays a quiet NaN, inf stays inf). Written in LLVM IR so that every operation
    stays 32 bits wide (numba widens integer arithmetic to 64 bits, which halves the lanes)."""
    sig = types.uint16(types.float32, types.int64, types.uint32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        xv, iv, sv = args
        c = lambda v: ir.Constant(i32, int(v))  # noqa: E731

        def xorshift(z, k):
            return builder.xor(z, builder.lshr(z, c(k)))

        z = builder.add(builder.mul(builder.trunc(iv, i32), c(rounding.GOLDEN32)), sv)
        z = builder.mul(xorshift(z, 16), c(rounding.LOW1))
        z = builder.mul(xorshift(z, 15), c(rounding.LOW2))
        r = builder.and_(xorshift(z, 16), c(0xFFFF))
        out = builder.lshr(builder.add(builder.bitcast(xv, i32), r), c(16))
        nan = builder.fcmp_unordered("uno", xv, xv)
        return builder.trunc(builder.select(nan, c(0x7FC0), out), ir.IntType(16))

    return sig, codegen


@njit(inline="always")
def _f16_to_f32_bits(h):
    sign = np.uint32(h & np.uint16(0x8000)) << np.uint32(16)
    exp = np.uint32((h >> np.uint16(10)) & np.uint16(0x1F))
    mant = np.uint32(h & np.uint16(0x3FF))
    if exp == 0:  # zero or subnormal: mant * 2**-24, exact in float32
        magnitude = np.float32(mant) * np.float32(5.960464477539063e-08)
        return _bits_f32(sign | _f32_bits(magnitude))
    if exp == 31:  # inf or NaN (the payload kept)
        return _bits_f32(sign | np.uint32(0x7F800000) | (mant << np.uint32(13)))
    return _bits_f32(sign | ((exp + np.uint32(112)) << np.uint32(23)) | (mant << np.uint32(13)))


@njit(inline="always")
def _f32_to_f16_bits(x):
    """NumPy's npy_floatbits_to_halfbits: round to nearest, ties to even."""
    f = _f32_bits(x)
    h_sgn = np.uint16((f & np.uint32(0x80000000)) >> np.uint32(16))
    f_exp = f & np.uint32(0x7F800000)
    if f_exp >= np.uint32(0x47800000):  # overflow, inf or NaN
        f_sig = f & np.uint32(0x007FFFFF)
        if f_exp == np.uint32(0x7F800000) and f_sig != 0:
            ret = np.uint16(0x7C00 + (f_sig >> np.uint32(13)))
            if ret == np.uint16(0x7C00):
                ret = np.uint16(0x7C01)
            return np.uint16(h_sgn + ret)
        return np.uint16(h_sgn + np.uint16(0x7C00))
    if f_exp <= np.uint32(0x38000000):  # a float16 subnormal, or zero
        if f_exp < np.uint32(0x33000000):
            return h_sgn
        e = f_exp >> np.uint32(23)
        f_sig = np.uint32(0x00800000) + (f & np.uint32(0x007FFFFF))
        f_sig = f_sig >> (np.uint32(113) - e)
        if (f_sig & np.uint32(0x3FFF)) != np.uint32(0x1000) or (f & np.uint32(0x7FF)) != 0:
            f_sig = f_sig + np.uint32(0x1000)
        return np.uint16(h_sgn + np.uint16(f_sig >> np.uint32(13)))
    h_exp = np.uint16((f_exp - np.uint32(0x38000000)) >> np.uint32(13))
    f_sig = f & np.uint32(0x007FFFFF)
    if (f_sig & np.uint32(0x3FFF)) != np.uint32(0x1000):
        f_sig = f_sig + np.uint32(0x1000)
    return np.uint16(h_sgn + np.uint16(np.uint16(f_sig >> np.uint32(13)) + h_exp))


def has_half_instructions() -> bool:
    """Whether numba's compile target converts float16 in hardware (F16C on x86)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True
    from numba.core import config

    if config.CPU_NAME is None:
        import llvmlite.binding as llvm

        return bool(llvm.get_host_cpu_features().get("f16c", False))
    return "+f16c" in (config.CPU_FEATURES or "")


if has_half_instructions():
    f16_to_f32, f32_to_f16 = _f16_to_f32_hw, _f32_to_f16_hw
else:
    f16_to_f32, f32_to_f16 = _f16_to_f32_bits, _f32_to_f16_bits
