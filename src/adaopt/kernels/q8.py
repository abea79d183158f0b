"""8-bit state inside numba loops: :mod:`adaopt.quant`'s maps and encoder, compiled.

The encoder and decoder are :func:`adaopt.quant.encode` and :func:`~adaopt.quant.decode`
themselves, the functions the reference path runs on arrays, compiled here for one number. So the
fused kernels and the reference quantize bit for bit alike.
"""

import numpy as np
from numba import njit

from .. import quant
from .lowp import _bits_f32, _f32_bits

_SD, _UD = quant.DECADES[True], quant.DECADES[False]
_encode, _decode = njit(inline="always")(quant.encode), njit(inline="always")(quant.decode)


@njit(inline="always")
def _pick(c, a, b):
    return a if c else b


@njit(inline="always")
def _bits(x):
    return _f32_bits(np.float32(x))


@njit(inline="always")
def _floats(b):
    return _bits_f32(np.uint32(b))


@njit(inline="always")
def encode_signed(y):
    """The int8 code of ``y`` in [-1, 1] on the signed map."""
    return np.int8(np.int32(_encode(y, _SD, True, _pick, _bits, _floats)))


@njit(inline="always")
def encode_unsigned(y):
    """The uint8 code of ``y`` in [0, 1] on the unsigned map."""
    return np.uint8(np.int32(_encode(y, _UD, False, _pick, _bits, _floats)))


@njit(inline="always")
def decode_signed(c):
    """The signed map's point of the int8 code ``c``."""
    return _decode(np.float32(c), _SD, True, _pick, _bits, _floats)


@njit(inline="always")
def decode_unsigned(c):
    """The unsigned map's point of the uint8 code ``c``."""
    return _decode(np.float32(c), _UD, False, _pick, _bits, _floats)


@njit(inline="always")
def abs_bits(x):
    """The bits of ``|x|`` (float32): for numbers that are not NaN, ordered as the numbers are,
    so a block's absmax is an integer max, which vectorises."""
    return _f32_bits(np.float32(x)) & np.uint32(0x7FFFFFFF)


@njit(inline="always")
def from_bits(b):
    return _bits_f32(b)
