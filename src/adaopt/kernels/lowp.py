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

from ..rounding import GOLDEN, MIX1, MIX2  # noqa: F401 (GOLDEN, MIX2: for the generated kernels)


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


@njit(inline="always")
def sr_bf16(x, z):
    """float32 ``x`` stochastically rounded to bfloat16 bits, from the SplitMix64 state
    ``z = (index + 1) * GOLDEN + (key * 2**32 + step) * MIX2``: the finaliser's lowest 16
    bits are added below the bfloat16 mantissa, then truncated, as
    :func:`adaopt.rounding.stochastic_bf16` does (NaN stays a quiet NaN, inf stays inf)."""
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    z = z ^ (z >> np.uint64(31))
    if x != x:
        return np.uint16(0x7FC0)
    return np.uint16((_f32_bits(x) + np.uint32(z & np.uint64(0xFFFF))) >> np.uint32(16))


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
