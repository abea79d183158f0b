"""8-bit state inside numba loops: :mod:`adaopt.quant`'s maps, compiled for one number.

:func:`adaopt.quant.encode` and :func:`~adaopt.quant.decode` are integer arithmetic on
float32 bits; here the same lines are LLVM IR on 32-bit integers, so that the fused kernels'
loops vectorise (numba's own integer arithmetic widens to 64 bits). The test suite checks
them against the NumPy ones bit for bit, on every code and on the points, the midpoints
and their neighbours.
"""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .. import quant
from .lowp import _bits_f32

_I8, _I32 = ir.IntType(8), ir.IntType(32)


def _c(v: int):
    return ir.Constant(_I32, v)


def _magnitude_code(builder, a, is_signed: bool):
    """The code of |y|'s bits ``a`` (:func:`adaopt.quant.encode`): per regime, bottom first,
    the mantissa rounded to its bits, ``((a + half) >> shift) - base``; of the regimes whose
    code reaches their lowest one, the topmost wins (each later one overrides). Clamped once at each end: only the top regime can pass
    the top code (y > 1, NaN), only the bottom one fall below 0."""
    regimes = list(reversed(quant.BASES[is_signed]))
    c = None
    for i, (low, shift, base) in enumerate(regimes):
        r = builder.sub(builder.lshr(builder.add(a, _c(1 << (shift - 1))), _c(shift)), _c(base))
        if i == len(regimes) - 1:
            top = _c(quant.TOP[is_signed])
            r = builder.select(builder.icmp_signed(">", r, top), top, r)
        if c is None:
            c = builder.select(builder.icmp_signed("<", r, _c(0)), _c(0), r)
        else:
            c = builder.select(builder.icmp_signed(">=", r, _c(low)), r, c)
    return c


def _point_bits(builder, m, is_signed: bool):
    """The bits of |Q|[m] (:func:`adaopt.quant.decode`): 0 for ``m = 0``."""
    bits = _c(0)
    for low, shift, base in reversed(quant.BASES[is_signed]):
        here = builder.shl(builder.add(m, _c(base)), _c(shift))
        bits = builder.select(builder.icmp_signed(">=", m, _c(max(low, 1))), here, bits)
    return bits


@intrinsic
def encode_signed(typingctx, y):
    """The int8 code of a float32 ``y`` in [-1, 1] on the signed map."""
    sig = types.int8(types.float32)

    def codegen(context, builder, signature, args):
        raw = builder.bitcast(args[0], _I32)
        c = _magnitude_code(builder, builder.and_(raw, _c(0x7FFFFFFF)), True)
        c = builder.select(builder.icmp_signed("<", raw, _c(0)), builder.neg(c), c)
        return builder.trunc(c, _I8)

    return sig, codegen


@intrinsic
def encode_unsigned(typingctx, y):
    """The uint8 code of a float32 ``y`` in [0, 1] on the unsigned map (never 0 for y > 0)."""
    sig = types.uint8(types.float32)

    def codegen(context, builder, signature, args):
        a = builder.and_(builder.bitcast(args[0], _I32), _c(0x7FFFFFFF))
        c = _magnitude_code(builder, a, False)
        positive = builder.zext(builder.icmp_unsigned("!=", a, _c(0)), _I32)
        c = builder.select(builder.icmp_signed(">", c, positive), c, positive)
        return builder.trunc(c, _I8)

    return sig, codegen


@intrinsic
def decode_signed(typingctx, c):
    """The signed map's point (float32) of the int8 code ``c``."""
    sig = types.float32(types.int8)

    def codegen(context, builder, signature, args):
        s = builder.sext(args[0], _I32)
        s = builder.select(builder.icmp_signed("<", s, _c(-127)), _c(-127), s)  # -128 (never written) as -127
        negative = builder.icmp_signed("<", s, _c(0))
        bits = _point_bits(builder, builder.select(negative, builder.neg(s), s), True)
        bits = builder.or_(bits, builder.select(negative, _c(-(1 << 31)), _c(0)))
        return builder.bitcast(bits, ir.FloatType())

    return sig, codegen


@intrinsic
def decode_unsigned(typingctx, c):
    """The unsigned map's point (float32) of the uint8 code ``c``."""
    sig = types.float32(types.uint8)

    def codegen(context, builder, signature, args):
        return builder.bitcast(_point_bits(builder, builder.zext(args[0], _I32), False), ir.FloatType())

    return sig, codegen


@intrinsic
def absmax_bits(typingctx, acc, x):
    """``max(acc, bits of |x|)`` (uint32; float32 ``x``): for numbers that are not NaN the bits
    are ordered as the numbers are, so a block's absmax is an integer max, which vectorises."""
    sig = types.uint32(types.uint32, types.float32)

    def codegen(context, builder, signature, args):
        b = builder.and_(builder.bitcast(args[1], _I32), _c(0x7FFFFFFF))
        return builder.select(builder.icmp_unsigned(">", b, args[0]), b, args[0])

    return sig, codegen


#: The float32 whose bits are the uint32 ``b``.
from_bits = _bits_f32


@intrinsic
def scaled(typingctx, d, s):
    """``d * s``, but 0 where the map point ``d`` is 0: an infinite scale (a block holding an
    overflowed moment) reads its other elements as 0, not 0 * inf = NaN. A select, which
    vectorises, where numba's conditional expression became a branch that did not."""
    sig = types.float32(types.float32, types.float32)

    def codegen(context, builder, signature, args):
        zero = ir.Constant(ir.FloatType(), 0.0)
        return builder.select(builder.fcmp_unordered("!=", args[0], zero), builder.fmul(args[0], args[1]), zero)

    return sig, codegen
