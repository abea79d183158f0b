"""8-bit state inside numba loops: :mod:`adaopt.quant`'s maps and encoder, compiled.

The encoder and decoder are :func:`adaopt.quant.encode` and :func:`~adaopt.quant.decode`
themselves, the functions the reference path runs on arrays, compiled here for one number. So the
fused kernels and the reference quantize bit for bit alike.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .. import quant
from .lowp import _bits_f32

_SD, _UD = quant.DECADES[True], quant.DECADES[False]
_encode, _decode = njit(inline="always")(quant.encode), njit(inline="always")(quant.decode)


@njit(inline="always")
def _pick(c, a, b):
    return a if c else b


@intrinsic
def _exponent(typingctx, a):
    """floor(log2 a) of a float32 ``a >= 0`` as a float32 (quant._exponent), in 32-bit IR."""
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        e = builder.lshr(builder.bitcast(args[0], i32), ir.Constant(i32, 23))
        return builder.fsub(builder.sitofp(e, ir.FloatType()), ir.Constant(ir.FloatType(), 127.0))

    return sig, codegen


@intrinsic
def _power(typingctx, e):
    """2**e of a float32 integer ``e`` (quant._power), in 32-bit IR."""
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        biased = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(biased, ir.Constant(i32, 23)), ir.FloatType())

    return sig, codegen


@njit(inline="always")
def encode_signed(y):
    """The int8 code of ``y`` in [-1, 1] on the signed map."""
    return np.int8(np.int32(_encode(y, _SD, True, _pick, _exponent, _power)))


@njit(inline="always")
def encode_unsigned(y):
    """The uint8 code of ``y`` in [0, 1] on the unsigned map."""
    return np.uint8(np.int32(_encode(y, _UD, False, _pick, _exponent, _power)))


@njit(inline="always")
def decode_signed(c):
    """The signed map's point of the int8 code ``c``."""
    return _decode(np.float32(c), _SD, True, _pick, _exponent, _power)


@njit(inline="always")
def decode_unsigned(c):
    """The unsigned map's point of the uint8 code ``c``."""
    return _decode(np.float32(c), _UD, False, _pick, _exponent, _power)


@intrinsic
def absmax_bits(typingctx, acc, x):
    """``max(acc, bits of |x|)`` (uint32; float32 ``x``): for numbers that are not NaN the bits
    are ordered as the numbers are, so a block's absmax is an integer max, which vectorises."""
    sig = types.uint32(types.uint32, types.float32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        b = builder.and_(builder.bitcast(args[1], i32), ir.Constant(i32, 0x7FFFFFFF))
        return builder.select(builder.icmp_unsigned(">", b, args[0]), b, args[0])

    return sig, codegen


@njit(inline="always")
def from_bits(b):
    return _bits_f32(b)
