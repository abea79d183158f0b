r"""Blockwise 8-bit optimizer state: ``state_dtype="int8"``.

Each moment buffer of a parameter with at least :data:`MIN_SIZE` elements is kept as one
byte per element (``codes``, the parameter's shape) and one float32 scale per block of
:data:`BLOCK` consecutive elements (in C order; the last block may be shorter), stored
beside it as ``state[key + "_absmax"]``. That is :math:`1 + 4/256 \approx 1.016` bytes
per element and per buffer: 2.03 bytes of state per parameter for Adam (two moments).

For a block :math:`b` of a buffer :math:`x`:

.. math::

    s_b = \max_{i \in b} |x_i|, \qquad
    c_i = \operatorname{code}(x_i / s_b), \qquad
    \tilde x_i = Q[c_i]\, s_b

(:math:`s_b = 0` gives every element the code of 0; an infinite :math:`s_b`, a moment that
overflowed, gives the infinite elements the top code and the others 0, see :func:`quantize`). The map :math:`Q` is a small
floating-point format below the block's absmax, in *regimes*: in each, the magnitudes are
the float32 numbers with :math:`b` mantissa bits (:math:`2^b` evenly spaced points to an
octave), that is, the numbers whose bits are :math:`(m + B) \cdot 2^{23-b}` for the codes
:math:`m` of the regime, with :math:`B` chosen so that the regimes meet (:data:`REGIMES`,
:data:`BASES`):

* **signed** map (first moments, ``exp_avg``, ``grad_avg``, ``momentum_buffer``): codes
  -127..127 as ``int8``, :math:`Q[c] = \operatorname{sign}(c)\,|Q|[|c|]`; codes 63..127 have
  4 bits, from :math:`2^{-4}` up to 1 (a largest rounding error of 1.6-3.1% of the value),
  codes 1..63 have 3 bits below, down to :math:`1.25 \cdot 2^{-12} \approx 3.1 \cdot 10^{-4}`.
* **unsigned** map (buffers that are never negative: :data:`UNSIGNED`): codes 0..255 as
  ``uint8``; codes 127..255 have 5 bits from :math:`2^{-4}` up to 1 (0.8-1.6%), codes 1..127
  3 bits below, down to :math:`1.25 \cdot 2^{-20} \approx 1.2 \cdot 10^{-6}`. A positive value
  never gets the code of 0 (it gets the smallest point instead), so a second moment is never
  quantized to 0: a second moment rounded to 0 under a first moment that is not turns
  :math:`m/(\sqrt v + \epsilon)` into :math:`m/\epsilon`.

Encoding (:func:`encode`) rounds the mantissa of :math:`a = |y|` to the regime's bits,
:math:`c = \lfloor (\mathrm{bits}(a) + 2^{22-b}) / 2^{23-b} \rfloor - B`, taking the top regime
whose result reaches its lowest code, clamped to :math:`[0, \mathrm{top}]`: the nearest point,
ties away from zero, except below the smallest point, where values under
:math:`0.95\,|Q|[1]` get the code of 0 (signed) or 1 (unsigned). It is integer arithmetic on
the float32 bits, which the fused kernels vectorise in a few instructions per regime.

A linear map would round every element below :math:`s_b/254` to 0. Blockwise scales with a
non-linear map are Dettmers et al.'s (8-bit optimizers via block-wise quantization, 2022);
this map is our own, chosen for speed and measured for accuracy: after 100 AdamW steps on a
noisy quadratic its runs are as close to float32 state's as the first map's (a dynamic map
in base 8, 1.4% steps near the absmax, whose float encoder made the step 2.2x slower) and
closer on a small MLP; one regime of 3 bits was 1.7x faster still but 1.6-2x less accurate.
State saved with an earlier map is refused on load (:data:`MAP_VERSION`), not misread.

Tensors under :data:`MIN_SIZE` elements keep float32 state, as bitsandbytes and torchao
do: their memory is small and their scale is poorly shared. The arithmetic of a step is
float32: the buffers are dequantized, the rule of :mod:`adaopt.rules` runs, and the results
are quantized again.
"""

from __future__ import annotations

import numpy as np

from . import dtypes

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


#: The map's version, written beside 8-bit state in every state_dict and checkpoint as
#: ``MAP_KEY``: 1 the first (base-10) map, 2 the dynamic map in base 8, 3 this one. Codes only
#: mean something under the map that wrote them, so a state_dict with 8-bit state and another
#: version (or none: written before versions were) is refused on load, not decoded wrong.
MAP_VERSION = 3
MAP_KEY = "int8_map"

#: Each map's regimes from the top: (its lowest code, mantissa bits). A regime's points are
#: the float32 numbers whose bits are (code + base) << (23 - mantissa bits).
REGIMES = {True: ((63, 4), (0, 3)), False: ((127, 5), (0, 3))}
#: The largest code of each map (signed: True), which stands for 1.
TOP = {True: 127, False: 255}


def _bases(is_signed: bool) -> tuple:
    """(lowest code, shift, base) per regime, top first; each regime's top point is the point
    where the regime above begins (a power of two), the top regime's is 1."""
    out, top_code, top_bits = [], TOP[is_signed], 127 << 23
    for low, bits in REGIMES[is_signed]:
        shift = 23 - bits
        out.append((low, shift, (top_bits >> shift) - top_code))
        top_code, top_bits = low, (low + out[-1][2]) << shift
    return tuple(out)


#: (lowest code, shift, base) of each map's regimes, top first.
BASES = {s: _bases(s) for s in (True, False)}


def encode(y, is_signed: bool) -> np.ndarray:
    """The codes (int32) of the map points nearest ``y`` in [-1, 1]: integer arithmetic
    on the float32 bits, the lines :mod:`adaopt.kernels.q8` writes in LLVM IR for one number."""
    bits = np.asarray(y, np.float32).view(np.uint32)
    a = (bits & np.uint32(0x7FFFFFFF)).astype(np.int64)  # |y|'s bits
    c = None
    for low, shift, base in reversed(BASES[is_signed]):  # the bottom regime first
        r = ((a + (1 << (shift - 1))) >> shift) - base  # the mantissa rounded to the regime's bits
        c = np.clip(r, 0, TOP[is_signed]) if c is None else np.where(r >= low, np.minimum(r, TOP[is_signed]), c)
    if is_signed:
        return np.where(bits >> np.uint32(31), -c, c).astype(np.int32)
    return np.maximum(c, a > 0).astype(np.int32)  # a positive value never gets the code of 0


def decode(code, is_signed: bool) -> np.ndarray:
    """The map points (float32) of integer codes: the inverse of :func:`encode`."""
    m = np.minimum(np.abs(np.asarray(code, np.int64)), TOP[is_signed])  # int8 -128 reads as -127
    bits = np.zeros(m.shape, np.int64)
    for low, shift, base in reversed(BASES[is_signed]):
        bits = np.where(m >= max(low, 1), (m + base) << shift, bits)
    mag = bits.astype(np.uint32).view(np.float32)
    return np.where(np.asarray(code) < 0, -mag, mag) if is_signed else mag


#: Q for the signed map, indexed by code + 127 (255 points, 0 in the middle).
SIGNED_MAP = decode(np.arange(-127, 128), True)
#: Q for the unsigned map, indexed by code (256 points, 0 first).
UNSIGNED_MAP = decode(np.arange(256), False)


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


#: A block holding an infinite value (a second moment whose g^2 overflowed, as it does for
#: gradients above about 1.8e19) gets an infinite scale: the infinite moment decodes to inf,
#: as float32 state keeps it (its coordinate then takes zero steps, for good), and every
#: other element of the block to 0 (code 0 reads as 0 under any scale, never 0 * inf = NaN),
#: so those moments restart. Saturating the scale at the largest float32 instead left the
#: overflowed coordinate a finite second moment under a first moment of 1e29: a step of 1e6.
#: A NaN makes its block's scale NaN, and the block NaN.

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
        safe = np.where((top > 0) & (top < np.inf), top, np.float32(1))
        y = blocks * (np.float32(1) / safe)[:, None]  # as the kernels: one division per block
        inf = top == np.inf  # an overflowed moment: inf stays inf (code +-top), the rest 0
        y[inf] = np.where(np.isinf(blocks[inf]), np.sign(blocks[inf]), np.float32(0))
        codes[start:start + part.size] = encode(y, is_signed).ravel()[: part.size]
        absmax[start // BLOCK: start // BLOCK + len(top)] = top
    return codes.reshape(np.shape(x)), absmax


def full(shape: tuple, fill: float, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``quantize(np.full(shape, fill), key)`` without the float buffer: a new 8-bit state's."""
    size = int(np.prod(shape, dtype=np.int64))
    one_codes, one_absmax = quantize(np.full(BLOCK, fill, np.float32), key)
    return (np.full(size, one_codes[0], code_dtype(key)).reshape(shape),
            np.full(n_blocks(size), one_absmax[0], np.float32))


def _index(codes: np.ndarray, offset: int) -> np.ndarray:
    """Positions in the map's table of ``codes``; the int8 code -128, which :func:`encode` never
    writes (a state from elsewhere may hold it), reads as -127, as the kernels read it."""
    return np.maximum(codes.astype(np.int16), -127) + offset


def _scaled(points: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``points * scale``, with the point 0 read as 0 under an infinite scale, as the kernels do."""
    with np.errstate(invalid="ignore"):
        return np.where(points != 0, points * scale, np.float32(0))


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
        out[start:start + part.size] = _scaled(table[_index(part, offset)], scale)
    return out.reshape(codes.shape)


def holds_codes(states) -> bool:
    """Whether any of the per-parameter ``states`` (dicts) holds 8-bit buffers."""
    return any(isinstance(st, dict) and any(isinstance(k, str) and k.endswith(SCALE) for k in st) for st in states)


def check_map(state_dict: dict, states) -> None:
    """Refuse a state_dict whose 8-bit state (in ``states``) was written under another map."""
    if not holds_codes(states):
        return
    version = state_dict.get(MAP_KEY)
    if version != MAP_VERSION:
        was = "no map version (an adaopt from before 2026-12-03)" if version is None else f"map version {version!r}"
        raise ValueError(f"the state_dict's 8-bit state was written with {was}; this adaopt reads map version "
                         f"{MAP_VERSION}, and codes decode only under the map that wrote them. Load it into the "
                         f"adaopt that wrote it with state_dtype=None and save that (float moments) to carry it over")


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
            out[k] = dtypes.narrow(v, st[k].dtype)  # a copy: never alias the caller's gradient


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


def floats(st: dict, lazy: bool = False) -> dict:
    """``st`` as readers of the moments (effective_lr, the Monitor's probes) need it: each
    8-bit buffer dequantized to float32 (``lazy``: a :class:`Packed` that dequantizes only what
    is read), the scales left out; other state as it is."""
    if not any(k.endswith(SCALE) for k in st):
        return st
    read = Packed if lazy else (lambda c, s: dequantize(np.asarray(c), np.asarray(s)))
    return {k: (read(v, st[k + SCALE]) if k + SCALE in st else v)
            for k, v in st.items() if not (k.endswith(SCALE) and k[: -len(SCALE)] in st)}


class Packed:
    """An 8-bit buffer read as the float32 numbers it stands for, flat, only where it is sliced:
    the Monitor's state summary reads a few hundred coordinates, and dequantizing a whole
    1e7-element moment for them took 130 ms a summary."""

    dtype = np.dtype(np.float32)

    def __init__(self, codes, absmax):
        codes = np.asarray(codes)
        self.shape, self.codes = codes.shape, codes.reshape(-1)
        self.absmax = np.asarray(absmax, np.float32)

    def reshape(self, *shape) -> "Packed":
        if shape not in ((-1,), ((-1,),)):
            raise ValueError("a Packed buffer is read flat: reshape(-1) only")
        flat = Packed.__new__(Packed)
        flat.shape, flat.codes, flat.absmax = (self.codes.size,), self.codes, self.absmax
        return flat

    def __getitem__(self, key: slice) -> np.ndarray:
        idx = np.arange(*key.indices(self.codes.size))
        signed_codes = self.codes.dtype == np.int8
        table, offset = (SIGNED_MAP, 127) if signed_codes else (UNSIGNED_MAP, 0)
        return _scaled(table[_index(self.codes[idx], offset)], self.absmax[idx // BLOCK])


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
