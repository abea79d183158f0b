r"""How a step's result, computed in float32, is stored in a 16-bit parameter.

Three ways, chosen per parameter group:

``nearest`` (default)
    round to the nearest bfloat16/float16, ties to even, as ``astype`` does (a NaN stored
    as bfloat16 is the quiet NaN 0x7FC0 whatever its sign, as torch stores it:
    :func:`adaopt.dtypes.narrow`). An update smaller than half the spacing between
    neighbours (an ulp) is lost entirely.
``kahan=True``
    compensated summation. The rounding error of each step is kept in a 16-bit
    buffer ``c`` and added back to the next update:

    .. math::

        y = \Delta_t + c_{t-1}, \qquad p_t = \mathrm{round}(p_{t-1} + y), \qquad
        c_t = y - (p_t - p_{t-1})

    In bfloat16, :math:`c_t` is stored truncated (toward zero), not rounded: its own
    error, one bfloat16 ulp of a residual already under half an ulp of :math:`p`, is
    immaterial, and truncation is one instruction of the fused kernel against seven.

``stochastic_rounding=True`` (bfloat16)
    round up or down at random, with odds set by the distance, so the rounding is
    right on average: :math:`E[\mathrm{round}(x)] = x`. The random bits are a hash of
    (parameter key, step, element index), not the output of a generator: the same
    element at the same step gets the same bits whatever the thread count, the
    bucket layout or the order of the parameters, and a run resumed from a
    checkpoint (which holds the step) continues bit for bit.

The hash: a 32-bit seed per (key, step), the low half of SplitMix64's finaliser (Steele,
Lea and Flood, 2014) over ``key * 2**32 + step``; per element, ``index * 0x9E3779B9 +
seed`` (mod 2**32) through the ``lowbias32`` finaliser (Wellons, 2018), all in 32-bit
integers so that the fused kernels run it 16 lanes wide. Its lowest 16 bits are added to
the float32 bit pattern below the bfloat16 mantissa before truncation. (Elements
2**32 apart in one tensor get the same bits.)
"""

from __future__ import annotations

import zlib

import numpy as np

from . import dtypes

#: SplitMix64's constants, for the per-step seed.
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
#: The per-element counter's step and lowbias32's multipliers (the fused kernels'
#: :func:`adaopt.kernels.lowp.sr_bf16` uses them too).
GOLDEN32 = np.uint32(0x9E3779B9)
LOW1 = np.uint32(0x7FEB352D)
LOW2 = np.uint32(0x846CA68B)


def param_key(name: str) -> int:
    """The stochastic-rounding key of a parameter: a 32-bit hash of its name, which is
    stable from run to run (positions in a model, or the names given to torch)."""
    return zlib.crc32(name.encode("utf-8"))


def seeds(keys: np.ndarray, step: int) -> np.ndarray:
    """The 32-bit seeds (uint32) of parameters ``keys`` (uint64) at ``step``."""
    with np.errstate(over="ignore"):
        z = ((keys.astype(np.uint64) << np.uint64(32)) | np.uint64(step & 0xFFFFFFFF)) * MIX2 + GOLDEN
        z = (z ^ (z >> np.uint64(30))) * MIX1
        z = (z ^ (z >> np.uint64(27))) * MIX2
        z ^= z >> np.uint64(31)
    return (z & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def lowbias32(z: np.ndarray) -> np.ndarray:
    """Wellons' 32-bit integer finaliser on uint32 arrays (the fused kernels' is written in
    LLVM IR, :func:`adaopt.kernels.lowp.sr_bf16`, and must give the same bits)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint32(16))) * LOW1
        z = (z ^ (z >> np.uint32(15))) * LOW2
    return z ^ (z >> np.uint32(16))


def random_bits(key: int, step: int, index: np.ndarray) -> np.ndarray:
    """16 random bits (as uint32) per element ``index`` for parameter ``key`` at ``step``."""
    seed = seeds(np.array([key], np.uint64), step)[0]
    with np.errstate(over="ignore"):
        z = np.asarray(index).astype(np.uint64).astype(np.uint32) * GOLDEN32 + seed
        return lowbias32(z) & np.uint32(0xFFFF)


def stochastic_bf16(x: np.ndarray, key: int, step: int, index: np.ndarray | None = None) -> np.ndarray:
    """float32 ``x`` rounded to bfloat16 bit patterns (uint32 holding them in the high half).

    ``index`` gives each element's flat position in its parameter (default: ``x`` is the
    whole parameter, in C order).
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    if index is None:
        index = np.arange(bits.size, dtype=np.uint64).reshape(bits.shape)
    out = (bits + random_bits(key, step, index)) & np.uint32(0xFFFF0000)  # inf stays inf
    return np.where(np.isnan(x), np.uint32(0x7FC00000), out)  # NaN stays a (quiet) NaN


def truncate_bf16(x: np.ndarray) -> np.ndarray:
    """float32 ``x`` as bfloat16, rounded toward zero (the high half of its bits)."""
    import ml_dtypes

    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32) >> np.uint32(16)
    return bits.astype(np.uint16).view(ml_dtypes.bfloat16)


def to_param_dtype(new_p: np.ndarray, old_p: np.ndarray, out_state: dict, hp: dict, cdtype, *,
                   key: int = 0, step: int = 1, index: np.ndarray | None = None) -> np.ndarray:
    """Store ``new_p`` (compute dtype) in ``old_p``'s dtype, by the group's rounding option.

    ``kahan`` reads the compensation from ``out_state["kahan_comp"]`` and writes the new
    one there; ``stochastic_rounding`` needs bfloat16 and the key, step and index above.
    """
    p_dtype = old_p.dtype
    low = p_dtype.itemsize == 2
    if low and hp.get("kahan"):
        old = old_p.astype(cdtype)
        y = (new_p - old) + out_state["kahan_comp"].astype(cdtype)  # this update and what was lost
        rounded = dtypes.narrow(old + y, p_dtype)
        comp = y - (rounded.astype(cdtype) - old)
        out_state["kahan_comp"] = truncate_bf16(comp) if dtypes.dtype_name(p_dtype) == "bfloat16" \
            else comp.astype(p_dtype)
        return rounded
    if low and hp.get("stochastic_rounding"):
        bits = stochastic_bf16(new_p, key, step, index)
        return bits.view(np.float32).astype(p_dtype)
    return dtypes.narrow(new_p, p_dtype)
