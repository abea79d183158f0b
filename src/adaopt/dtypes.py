"""Floating-point types adaopt steps, and the epsilon each one can hold.

NumPy knows float16, float32 and float64; bfloat16 comes from the optional
``ml_dtypes`` package (``pip install adaopt[lowp]``). adaopt recognises bfloat16 by
name, so it never imports ``ml_dtypes`` unless a bfloat16 array has to be made.

The lesson's pitfall 5 ("1e-8 works for float32 but not float16") is sharper than
it says: 1e-8 is below float16's smallest subnormal (6e-8) and rounds to exactly 0,
so ``m / (sqrt(v) + eps)`` becomes 0/0 = NaN for any coordinate whose gradient is
zero. :func:`default_eps` therefore never returns an epsilon below the smallest
normal number of the dtype the arithmetic runs in.
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: The parameter dtypes adaopt steps, by name.
SUPPORTED = ("float64", "float32", "float16", "bfloat16")

#: The dtypes a state buffer may be kept in: these, and the 8-bit codes of state_dtype="int8".
STORED = (*SUPPORTED, "int8", "uint8")

#: Smallest positive normal number of each supported dtype.
_TINY = {
    "float64": float(np.finfo(np.float64).tiny),
    "float32": float(np.finfo(np.float32).tiny),
    "float16": float(np.finfo(np.float16).tiny),
    "bfloat16": 2.0**-126,
    "int8": float(np.finfo(np.float32).tiny),  # 8-bit state computes in float32
}


@functools.lru_cache(maxsize=64)
def _name_of(dtype: np.dtype) -> str:
    return dtype.name


def dtype_name(dtype) -> str:
    """The name of a dtype (``'bfloat16'`` for ml_dtypes' bfloat16); names pass through,
    so ``'bfloat16'`` works without ml_dtypes imported."""
    if isinstance(dtype, str) and dtype in SUPPORTED:
        return dtype
    return _name_of(dtype if isinstance(dtype, np.dtype) else np.dtype(dtype))


def is_supported(dtype) -> bool:
    try:
        return dtype_name(dtype) in SUPPORTED
    except TypeError:
        return False


def is_stored(dtype) -> bool:
    """Whether a state buffer may have this dtype (:data:`STORED`)."""
    try:
        return dtype_name(dtype) in STORED
    except TypeError:
        return False


def as_dtype(name_or_dtype) -> np.dtype:
    """A NumPy dtype from a name or dtype; ``'bfloat16'`` imports ml_dtypes."""
    if isinstance(name_or_dtype, str) and name_or_dtype == "bfloat16":
        try:
            import ml_dtypes
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "bfloat16 needs the ml_dtypes package: pip install 'adaopt[lowp]'"
            ) from exc
        return np.dtype(ml_dtypes.bfloat16)
    dt = np.dtype(name_or_dtype)
    if dt.name not in SUPPORTED:
        raise ValueError(f"dtype {dt.name!r} is not supported; use one of {', '.join(SUPPORTED)}")
    return dt


def compute_dtype(param_dtype, state_dtype=None) -> np.dtype:
    """The dtype of a parameter's optimizer state, which also sets its epsilon.

    float64 and float32 parameters keep state in their own dtype (as torch.optim does).
    float16 and bfloat16 parameters keep float32 state unless ``state_dtype`` says
    otherwise: their 10- and 7-bit mantissas cannot hold a moving average. The
    arithmetic runs in :func:`arith_dtype` (float32 or float64), whatever the storage.
    ``state_dtype="int8"`` (8-bit blockwise state, :mod:`adaopt.quant`) computes in float32.
    """
    if isinstance(state_dtype, str) and state_dtype == "int8":
        return np.dtype(np.float32)
    if state_dtype is not None:
        return as_dtype(state_dtype)
    name = dtype_name(param_dtype)
    if name in ("float16", "bfloat16"):
        return np.dtype(np.float32)
    return np.dtype(param_dtype).newbyteorder("=")  # arithmetic in this machine's byte order


def arith_dtype(param_dtype, state_dtype) -> np.dtype:
    """The dtype the update arithmetic runs in: float64 when the parameter or the state is
    float64, else float32. float16 and bfloat16 are storage formats, as in torch's fused
    kernels: 16-bit moments are loaded, updated in float32 and rounded (to nearest, ties to
    even) when stored, and a float32 parameter with bfloat16 moments is never rounded to
    bfloat16 itself. ``state_dtype`` (:func:`compute_dtype`) still sets the stored state and
    the epsilon (float16 state gets an epsilon float16 can hold).

    >>> arith_dtype("float32", "bfloat16"), arith_dtype("float16", "float16")
    (dtype('float32'), dtype('float32'))
    >>> arith_dtype("float64", "float32")
    dtype('float64')
    """
    wide = "float64" in (dtype_name(param_dtype), dtype_name(state_dtype))
    return np.dtype(np.float64 if wide else np.float32)


def narrow(x, dtype) -> np.ndarray:
    """``x`` stored as ``dtype`` (a new array), rounded to nearest, ties to even, as ``astype``
    rounds; a NaN stored as bfloat16 is the quiet NaN 0x7FC0 whatever its sign and payload,
    as torch's conversion and adaopt's fused kernels store it (ml_dtypes' ``astype`` keeps the
    sign: 0xFFC0 from the negative NaN that x86 arithmetic makes of inf - inf)."""
    dtype = np.dtype(dtype)
    out = np.array(x, dtype=dtype)
    if dtype.itemsize == 2 and dtype_name(dtype) == "bfloat16":
        bits = out.view(np.uint16)
        nan = (bits & np.uint16(0x7FFF)) > np.uint16(0x7F80)
        if nan.any():
            bits[nan] = np.uint16(0x7FC0)
    return out


def smallest_normal(dtype) -> float:
    """Smallest positive normal number of a supported dtype."""
    return _TINY[dtype_name(dtype)]


@functools.lru_cache(maxsize=64)
def default_eps(dtype, base: float = 1e-8) -> float:
    r"""An epsilon that is safe for arithmetic in ``dtype``.

    Returns ``base`` (the optimizer's usual default, 1e-8 for Adam) unless it is
    below the dtype's smallest normal number, in which case that number rounded up
    to a power of ten is returned: float16 gives ``1e-4`` (its smallest normal is
    6.1e-5, and 1e-8 would round to 0); float32, bfloat16 and float64 keep ``base``.

    >>> default_eps("float16")
    0.0001
    >>> default_eps("float32")
    1e-08
    """
    floor = 10.0 ** math.ceil(math.log10(smallest_normal(dtype)))
    return max(float(base), floor)


@functools.lru_cache(maxsize=256)
def rounds_to_zero(value: float, dtype) -> bool:
    """True when a nonzero ``value`` becomes 0 once stored in ``dtype``."""
    return value != 0 and float(np.asarray(value, dtype=np.float64).astype(as_dtype(dtype_name(dtype)))) == 0.0
