r"""Blockwise 8-bit optimizer state: ``state_dtype="int8"``.

Each moment buffer of a parameter with at least :data:`MIN_SIZE` elements is kept as one
byte per element (``codes``, the parameter's shape) and one float32 scale per block of
:data:`BLOCK` consecutive elements (in C order; the last block may be shorter), stored
beside it as ``state[key + "_absmax"]``. That is :math:`1 + 4/256 \approx 1.016` bytes
per element and per buffer: 2.03 bytes of state per parameter for Adam (two moments).

For a block :math:`b` of a buffer :math:`x`:

.. math::

    s_b = \max_{i \in b} |x_i|, \qquad
    c_i = \operatorname*{arg\,min}_c \bigl| Q[c] - x_i / s_b \bigr|, \qquad
    \tilde x_i = Q[c_i]\, s_b

(:math:`s_b = 0` gives :math:`c_i` the code of 0). The map :math:`Q` is a *dynamic* map
in base 8: decade :math:`k = 0, 1, \dots` spans :math:`[8^{-k-1}, 8^{-k}]` and holds the
points :math:`8^{-k}(\tfrac18 + \tfrac78\, j / n_k)`, :math:`j = 1..n_k`, with :math:`n_k`
halving from one decade to the next (64, 32, ..., 1 for the signed map; 128, ..., 1 for
the unsigned one). A linear map would round every element below :math:`s_b/254` to 0,
and a second moment rounded to 0 under a first moment that is not turns
:math:`m/(\sqrt v + \epsilon)` into :math:`m/\epsilon`; the dynamic map reaches down to
:math:`8^{-6} s_b \approx 3.8 \cdot 10^{-6} s_b` (signed) and :math:`8^{-7} s_b \approx
4.8 \cdot 10^{-7} s_b` (unsigned) while keeping its finest steps (1.4% of :math:`s_b`
signed, 0.7% unsigned) near the block's largest values, which carry the update. The
idea is Dettmers et al.'s (8-bit optimizers via block-wise quantization, 2022); this map is
our own, simpler one, in base 8 so that both directions are a few exact float32 and bit
operations, which the fused kernels vectorise (the first version's base-10 map needed
divisions and per-decade selects: a 1.5x slower kernel; state saved with it does not
decode with this map).

* **signed** map (first moments, ``exp_avg``, ``grad_avg``, ``momentum_buffer``): codes
  -127..127 as ``int8``, :math:`Q[c] = \operatorname{sign}(c)\,|Q|[|c|]`.
* **unsigned** map (buffers that are never negative: :data:`UNSIGNED`): codes 0..255 as
  ``uint8``, one more bit of resolution. A positive value never gets the code of 0 (it
  gets the smallest magnitude instead), so a second moment is never quantized to 0.

Both directions are closed formulas (:func:`encode`, :func:`decode`), written once for
NumPy arrays and compiled by the fused kernels for one number. With :math:`D` decades
(7 signed, 8 unsigned), the magnitude of index :math:`m \ge 1` lies in decade
:math:`k = D - 1 - e`, :math:`e = \lfloor \log_2 m \rfloor`, :math:`n_k = 2^e`,
:math:`j = m - n_k + 1`, so

.. math::

    |Q|[m] = \bigl(7m - 6 \cdot 2^e + 7\bigr)\, 2^{2e - 3D}

exactly (the top point is 1). Encoding takes the decade of :math:`a = |y|` from its
float exponent :math:`E`, :math:`k = \min(\max(\lfloor (-E-1)/3 \rfloor, 0), D-1)`, and
rounds on the decade's uniform grid, which runs from its lower edge (the next decade's
top; 0 in the last decade) to its top:

.. math::

    m = n_k - 1 + \bigl\lceil (8^k a - \tfrac18)\,\tfrac87 n_k - \tfrac12 \bigr\rceil
    \quad (k < D-1), \qquad
    m = \lceil 8^k a - \tfrac12 \rceil \quad (k = D-1),

the nearest point, ties (to float32 rounding) going to the lower one. Tensors under
:data:`MIN_SIZE` elements keep float32 state, as bitsandbytes and torchao do: their
memory is small and their scale is poorly shared. The arithmetic of a step is float32: the
buffers are dequantized, the rule of :mod:`adaopt.rules` runs, and the results are
quantized again.
"""

from __future__ import annotations

import numpy as np

#: Elements per block: each block has its own float32 absmax scale.
BLOCK = 256
#: Tensors with fewer elements keep float32 state.
MIN_SIZE = 4096
#: The name of the 8-bit state option.
NAME = "int8"
#: The suffix of a quantized buffer's per-block scales in the state.
SCALE = "_absmax"
#: Buffers that are never negative, which take the unsigned map.
UNSIGNED = frozenset({"exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum", "exp_inf", "acc_delta"})


def _exponent(a):
    """floor(log2 a) of float32 ``a >= 0`` as a float32 integer (-127 for 0 and subnormals)."""
    return (np.asarray(a, np.float32).view(np.uint32) >> np.uint32(23)).astype(np.float32) - np.float32(127)


def _power(e):
    """2**e (float32) of float32 integers ``e`` in the normal range, built from exponent bits."""
    return ((np.asarray(e).astype(np.int32) + np.int32(127)).astype(np.uint32) << np.uint32(23)).view(np.float32)


#: Decades of each map (signed: True).
DECADES = {True: 7, False: 8}
_ONE_HALF, _ONE, _ZERO, _TWO = np.float32(1.5), np.float32(1), np.float32(0), np.float32(2)
_EIGHTH, _SEVEN, _SIX, _RATE = np.float32(0.125), np.float32(7), np.float32(6), np.float32(8 / 7)
_THREE, _THIRD = np.float32(3), np.float32(1 / 3)


def encode(y, decades: int, is_signed: bool, where=np.where, exponent=_exponent, power=_power):
    """The code (a float32 integer) of the map point nearest ``y`` in [-1, 1].

    Written once for NumPy arrays (the reference path) and numba scalars: the fused kernels
    compile this function with a scalar select (``where``) and 32-bit ``exponent``/``power``
    (:mod:`adaopt.kernels.q8`), so both run the same float32 operations in the same order.
    All the arithmetic is float32 (integers are exact float32 numbers), so the kernels'
    vectors stay 32 bits wide.
    """
    a = np.abs(y)
    # the decade: floor((-1 - floor(log2 a)) / 3), exact for these small integers
    k = np.minimum(np.maximum(np.floor((-_ONE - exponent(a)) * _THIRD), _ZERO), np.float32(decades - 1))
    x = a * power(_THREE * k)  # 8**k a, exact
    n = power(np.float32(decades - 1) - k)  # n_k
    t = where(k == decades - 1, x, (x - _EIGHTH) * (_RATE * n))
    m = np.minimum(np.ceil(t + (n - _ONE_HALF)), np.float32(2**decades - 1))
    if is_signed:
        return where(y < 0, -m, m)
    return where((m == 0) & (a > 0), _ONE, m)  # a positive value never gets the code of 0


def decode(code, decades: int, is_signed: bool, where=np.where, exponent=_exponent, power=_power):
    """The map point (float32) of a code (a float32 integer): the inverse of :func:`encode`."""
    m = np.abs(code)
    e = np.maximum(exponent(m), _ZERO)  # floor(log2 m)
    mag = (_SEVEN * m - _SIX * power(e) + _SEVEN) * power(_TWO * e - np.float32(3 * decades))
    mag = where(m == 0, _ZERO, mag)
    return where(code < 0, -mag, mag) if is_signed else mag


#: Q for the signed map, indexed by code + 127 (255 points, 0 in the middle).
SIGNED_MAP = decode(np.arange(-127, 128, dtype=np.float32), DECADES[True], True)
#: Q for the unsigned map, indexed by code (256 points, 0 first).
UNSIGNED_MAP = decode(np.arange(256, dtype=np.float32), DECADES[False], False)


def n_blocks(size: int) -> int:
    """The number of blocks of a buffer of ``size`` elements."""
    return -(-int(size) // BLOCK)


def applies(hp: dict, size: int) -> bool:
    """Whether a parameter of ``size`` elements keeps 8-bit state under the group ``hp``."""
    return hp.get("state_dtype") == NAME and size >= MIN_SIZE


def signed(key: str) -> bool:
    return key not in UNSIGNED


def code_dtype(key: str) -> np.dtype:
    return np.dtype(np.int8 if signed(key) else np.uint8)


def _blocks(x: np.ndarray) -> np.ndarray:
    """``x`` flattened and padded with zeros to whole blocks, as (blocks, BLOCK)."""
    flat = np.ravel(x)
    pad = n_blocks(flat.size) * BLOCK - flat.size
    return np.concatenate([flat, np.zeros(pad, flat.dtype)]).reshape(-1, BLOCK)


#: Blocks quantized at a time: the arithmetic's temporaries stay about 40 MB whatever the
#: buffer's size (a whole 3e7-element buffer at once took 1.4 GB).
CHUNK_BLOCKS = 4096


def quantize(x: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, absmax)`` of the buffer ``x`` (float32 arithmetic), for the map of ``key``."""
    is_signed = signed(key)
    flat = np.ravel(x)
    codes = np.empty(flat.size, code_dtype(key))
    absmax = np.empty(n_blocks(flat.size), np.float32)
    step = CHUNK_BLOCKS * BLOCK
    for start in range(0, flat.size, step):
        part = flat[start:start + step]
        blocks = _blocks(np.asarray(part, dtype=np.float32))
        top = np.max(np.abs(blocks), axis=1)
        safe = np.where(top > 0, top, np.float32(1))
        y = blocks * (np.float32(1) / safe)[:, None]  # as the kernels: one division per block
        codes[start:start + part.size] = encode(y, DECADES[is_signed], is_signed).ravel()[: part.size]
        absmax[start // BLOCK: start // BLOCK + len(top)] = top
    return codes.reshape(np.shape(x)), absmax


def full(shape: tuple, fill: float, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``quantize(np.full(shape, fill), key)`` without the float buffer: a new 8-bit state's."""
    size = int(np.prod(shape, dtype=np.int64))
    one_codes, one_absmax = quantize(np.full(BLOCK, fill, np.float32), key)
    return (np.full(size, one_codes[0], code_dtype(key)).reshape(shape),
            np.full(n_blocks(size), one_absmax[0], np.float32))


def dequantize(codes: np.ndarray, absmax: np.ndarray, dtype=np.float32) -> np.ndarray:
    """The buffer that ``codes`` (int8: signed map, uint8: unsigned) and ``absmax`` stand for."""
    table = SIGNED_MAP if codes.dtype == np.int8 else UNSIGNED_MAP
    offset = 127 if codes.dtype == np.int8 else 0
    flat, scales = np.ravel(codes), np.asarray(absmax, np.float32)
    out = np.empty(flat.size, dtype)
    step = CHUNK_BLOCKS * BLOCK
    for start in range(0, flat.size, step):  # in chunks, as quantize
        part = flat[start:start + step]
        scale = np.repeat(scales[start // BLOCK: start // BLOCK + n_blocks(part.size)], BLOCK)[: part.size]
        out[start:start + part.size] = table[part.astype(np.int16) + offset] * scale
    return out.reshape(codes.shape)


def is_quantized(st: dict, key: str) -> bool:
    return key + SCALE in st


def load(st: dict, keys, dtype) -> dict:
    """The rule's buffers in ``dtype``: dequantized where ``st`` holds them quantized."""
    return {k: dequantize(st[k], st[k + SCALE], dtype) if is_quantized(st, k)
            else st[k].astype(dtype, copy=False) for k in keys}


def store(out: dict, new_buffers: dict, st: dict) -> None:
    """Write the rule's new buffers into ``out`` in the form ``st`` keeps them."""
    for k, v in new_buffers.items():
        if is_quantized(st, k):
            out[k], out[k + SCALE] = quantize(v, k)
        else:
            out[k] = np.array(v, dtype=st[k].dtype)  # a copy: never alias the caller's gradient


def conform(st: dict, keys, want_int8: bool, dtype=np.float32) -> None:
    """Put ``st``'s buffers in the form the group asks for, in place: float buffers (a
    float32 optimizer's state_dict) are quantized, quantized ones dequantized to ``dtype``."""
    for k in keys:
        if k not in st:
            continue
        if want_int8 and not is_quantized(st, k):
            st[k], st[k + SCALE] = quantize(st[k], k)
        elif not want_int8 and is_quantized(st, k):
            st[k] = dequantize(st[k], st.pop(k + SCALE), dtype)


def floats(st: dict) -> dict:
    """``st`` as readers of the moments (effective_lr, the Monitor's probes) need it: each
    8-bit buffer dequantized to float32, the scales left out; other state as it is."""
    if not any(k.endswith(SCALE) for k in st):
        return st
    return {k: (dequantize(np.asarray(v), np.asarray(st[k + SCALE])) if k + SCALE in st else v)
            for k, v in st.items() if not (k.endswith(SCALE) and k[: -len(SCALE)] in st)}


def expected_shape(key: str, p_shape: tuple, scalar_keys) -> tuple:
    """The shape a state entry must have: a scale's is its blocks', a scalar's (), else the
    parameter's."""
    if key in scalar_keys:
        return ()
    if key.endswith(SCALE):
        return (n_blocks(int(np.prod(p_shape, dtype=np.int64))),)
    return tuple(p_shape)


def state_bytes(st: dict) -> int:
    """Bytes of the arrays in a parameter's state (codes, scales and float buffers)."""
    return sum(v.nbytes for k, v in st.items() if k != "step" and isinstance(v, np.ndarray))
