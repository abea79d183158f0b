r"""The Python source of a fused kernel: a recorded rule inside the multi-tensor loop.

A :class:`Layout` says how a bucket's numbers are stored and rounded:

``p_kind``
    the parameters' and gradients' dtype (float16/bfloat16 as their uint16 bits);
``g_kind``
    the gradients' dtype where it is not ``p_kind``: float32 gradients of 16-bit parameters
    (torch's ``param.grad_dtype``), read as they are instead of rounded to 16 bits first;
``s_kind``
    the state buffers' dtype: the arithmetic's, or narrower (bfloat16 moments of float32
    parameters, float32 moments of float64 ones): loaded and widened, stored rounded to
    nearest, ties to even;
``compute``
    the arithmetic's dtype (float32 or float64);
``rounding``
    how the new parameter is stored in a 16-bit ``p_kind`` (:mod:`adaopt.rounding`, the
    reference these tails reproduce bit for bit):

    * ``"nearest"``: :math:`p_t = \mathrm{rn}(x)` for the rule's result :math:`x`;
    * ``"kahan"``: with the compensation :math:`c` a column of the address table, in
      ``p_kind``:

      .. math::

          y = (x - p_{t-1}) + c_{t-1}, \quad p_t = \mathrm{rn}(p_{t-1} + y), \quad
          c_t = \mathrm{rn}(y - (p_t - p_{t-1}))

      (for bfloat16, :math:`c_t` truncated toward zero instead, as :mod:`adaopt.rounding` does)

    * ``"stochastic"`` (bfloat16): :math:`p_t` = the bits of :math:`x` plus 16 random bits,
      truncated (:func:`.lowp.sr_bf16`). The table's column holds the parameter's seed for
      this step (:func:`adaopt.rounding.seeds`, an integer, not an address), so element
      ``a + i`` of a work item gets the bits :func:`adaopt.rounding.random_bits` gives it,
      whatever the threads and the work items.

``quant``
    for 8-bit state (``state_dtype="int8"``, :mod:`adaopt.quant`), whether each buffer takes
    the signed map (``int8`` codes) or the unsigned one (``uint8``); empty otherwise. The
    scales (one float32 per 256-element block) are the table's last columns. A work item
    covers whole blocks; each block is dequantized on load, stepped with its new values
    kept in a 256-element scratch row, and quantized again with its new absmax
    (:func:`adaopt.quant.encode`, compiled from the reference's own lines).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROUNDINGS = ("nearest", "kahan", "stochastic")
#: Elements per scale of 8-bit state (:data:`adaopt.quant.BLOCK`).
QBLOCK = 256
#: Reads of the done count a thread of the threaded kernel makes, once it finds no group left
#: to claim, before it returns and (the calling thread) sleeps until the last group is done:
#: about as long as one group of 32K elements takes (a few tens of microseconds).
SPIN = 1 << 13
_HALF = {"float16": ("f16_to_f32", "f32_to_f16"), "bfloat16": ("bf16_to_f32", "f32_to_bf16")}


@dataclass(frozen=True)
class Layout:
    """Storage and rounding of one bucket (see the module's docstring)."""

    p_kind: str
    s_kind: str
    compute: str
    rounding: str = "nearest"
    quant: tuple = ()
    g_kind: str = ""  # the gradients' dtype when it is not the parameters' (float32 of 16-bit ones)

    @property
    def grad_kind(self) -> str:
        return self.g_kind or self.p_kind

    @property
    def extra(self) -> int:
        """Table columns after the state buffers: the compensation or the SR base."""
        return 0 if self.rounding == "nearest" else 1

    @property
    def columns(self) -> int:
        """Table columns after the state buffers: :attr:`extra`, then 8-bit state's scales."""
        return self.extra + len(self.quant)


def storage(kind: str) -> str:
    """The dtype a kernel indexes an array of ``kind`` as."""
    return "uint16" if kind in _HALF else kind


def load(kind: str, compute: str, expr: str) -> str:
    """An element of storage ``kind`` as a ``compute``-dtype number."""
    if kind in _HALF:
        return f"np.{compute}({_HALF[kind][0]}({expr}))"
    return f"np.{compute}({expr})"


def store(kind: str, expr: str) -> str:
    """A compute-dtype number as an element of storage ``kind`` (round to nearest even)."""
    if kind in _HALF:
        return f"{_HALF[kind][1]}(np.float32({expr}))"
    return f"np.{kind}({expr})"


def _parameter_tail(lay: Layout, x: str) -> list[str]:
    """The lines that store the rule's new parameter ``x``."""
    if lay.rounding == "kahan":
        c, kind = lay.compute, lay.p_kind
        rounded = load(kind, c, "r_")
        if kind == "bfloat16":  # the rounded value kept as a number (round_bf16), its bits stored exactly
            return [f"y_ = (np.{c}({x}) - p_) + {load(kind, c, 'c[i]')}",
                    f"r_ = np.{c}(round_bf16(np.float32(p_ + y_)))",
                    "p[i] = trunc_bf16(np.float32(r_))",
                    "c[i] = trunc_bf16(np.float32(y_ - (r_ - p_)))"]  # rounding.py: bf16's truncated
        return [f"y_ = (np.{c}({x}) - p_) + {load(kind, c, 'c[i]')}",
                f"r_ = {store(kind, 'p_ + y_')}",
                "p[i] = r_",
                f"c[i] = {_HALF[kind][1]}(np.float32(y_ - ({rounded} - p_)))"]
    if lay.rounding == "stochastic":
        return [f"p[i] = sr_bf16(np.float32({x}), i, sb)"]
    return [f"p[i] = {store(lay.p_kind, x)}"]


def _buffer_lines(lay: Layout, buffers, outs) -> tuple[list[str], list[str]]:
    """Loads and stores of the state buffers, in their storage kind."""
    same = lay.s_kind == lay.compute
    loads = [f"{name}_ = b{k}[i]" if same else f"{name}_ = {load(lay.s_kind, lay.compute, f'b{k}[i]')}"
             for k, name in enumerate(buffers)]
    stores = [f"b{k}[i] = {out}" if same else f"b{k}[i] = {store(lay.s_kind, out)}"
              for k, out in enumerate(outs)]
    return loads, stores


@functools.lru_cache(maxsize=None)
def helpers_digest() -> str:
    """A digest of the code a kernel calls into (its helpers and the 8-bit map), written into
    every kernel's source: numba's cache knows only the kernel's own file, so a new adaopt
    whose helpers changed must get new kernel files, not the old machine code."""
    here = Path(__file__).resolve().parent
    files = [here / "lowp.py", here / "memory.py", here / "q8.py", here.parent / "quant.py", here.parent / "rounding.py"]
    return hashlib.sha1(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def _head(program, lay: Layout, parallel: bool) -> list[str]:
    """The kernel up to the work item's loop: imports, scalars, the loop over work groups.

    The serial kernel takes the groups in order. The threaded one (run on every thread of
    :mod:`.threads` at once, each with the same arguments) claims them one at a time: ``C[0]``
    is the next group to claim, ``C[1]`` the number done, both changed atomically.
    """
    lines = [
        f"# adaopt kernel; helpers {helpers_digest()}",
        "import numpy as np",
        "import numba",
        "from adaopt.kernels.lowp import f16_to_f32, f32_to_f16, bf16_to_f32, f32_to_bf16, round_bf16, trunc_bf16, "
        "sr_bf16, GOLDEN32, mul32",
        "from adaopt.kernels.memory import address, fetch_add, load_acquire",
    ]
    if lay.quant:
        lines.append("from adaopt.kernels.q8 import decode_signed, decode_unsigned, encode_signed, encode_unsigned, "
                     "absmax_bits, from_bits, scaled")
    lines += [
        "",
        "@numba.njit(error_model='numpy', cache=True, nogil=True)",
        f"def kernel(A, S, GS, WJ, WA, WB{', C' if parallel else ''}):",
    ]
    lines += [f"    s{k} = S[{k}]" for k in range(len(program.scalars))]
    if lay.quant:
        lines += [f"    scr{k} = np.empty({QBLOCK}, np.float32)" for k in range(len(lay.quant))]
    if parallel:
        lines += ["    groups = GS.shape[0] - 1",
                  "    counts = C.ctypes.data",
                  "    while True:",
                  "        w = fetch_add(counts, 1)",
                  "        if w >= groups:",
                  "            break"]
    else:
        lines.append("    for w in range(GS.shape[0] - 1):")
    lines += ["        for it in range(GS[w], GS[w + 1]):",
              "            j = WJ[it]",
              "            a = WA[it]",
              "            n = WB[it] - a"]
    return lines


def _tail(parallel: bool) -> list[str]:
    """The threaded kernel's end: count the group done; once none is left to claim, wait
    briefly for the others' last groups. True when every group is done (the caller need
    not wait), False when some are still running after SPIN reads."""
    if not parallel:
        return []
    return ["        fetch_add(counts + 8, 1)",
            f"    for _ in range({SPIN}):",
            "        if load_acquire(counts + 8) >= groups:",
            "            return True",
            "    return False"]


def _arrays(program, lay: Layout, start: str, size: str) -> list[str]:
    """The lines that rebuild elements ``start : start + size`` of a work item's tensor j."""
    nb = len(program.buffers)
    p_store = storage(lay.p_kind)
    p_size = np.dtype(p_store).itemsize
    g_store = storage(lay.grad_kind)
    lines = [f"p = numba.carray(address(A[j, 0] + {p_size} * {start}), {size}, np.{p_store})",
             f"g = numba.carray(address(A[j, 1] + {np.dtype(g_store).itemsize} * {start}), {size}, np.{g_store})"]
    s_stores = ([("int8" if sg else "uint8") for sg in lay.quant] if lay.quant
                else [storage(lay.s_kind)] * nb)
    lines += [f"b{k} = numba.carray(address(A[j, {k + 2}] + {np.dtype(st).itemsize} * {start}), {size}, np.{st})"
              for k, st in enumerate(s_stores)]
    if lay.rounding == "kahan":
        lines.append(f"c = numba.carray(address(A[j, {nb + 2}] + {p_size} * {start}), {size}, np.{p_store})")
    elif lay.rounding == "stochastic":  # (start + i) * GOLDEN32 + seed (mod 2**32): the part fixed per item
        lines.append(f"sb = np.uint32((mul32(np.uint32({start} & 0xFFFFFFFF), GOLDEN32) + np.uint32(A[j, {nb + 2}])) "
                     "& 0xFFFFFFFF)")
    return lines


def source(program, lay: Layout, parallel: bool) -> str:
    """The kernel for ``program`` stored as ``lay`` says.

    Each work item's arrays are rebuilt from the address table and start at element 0,
    so the inner loop vectorises.
    """
    lines = _head(program, lay, parallel)
    if lay.quant:
        return "\n".join(lines + _quant_loop(program, lay) + _tail(parallel) + _entry(lay, parallel)) + "\n"
    lines += [f"            {line}" for line in _arrays(program, lay, "a", "n")]
    lines.append("            for i in range(n):")
    loads, stores = _buffer_lines(lay, program.buffers, program.buffer_out)
    body = [f"p_ = {load(lay.p_kind, lay.compute, 'p[i]')}", f"g_ = {load(lay.grad_kind, lay.compute, 'g[i]')}"]
    body += loads + list(program.body) + _parameter_tail(lay, program.p_out) + stores
    lines += [f"                {line}" for line in body]
    return "\n".join(lines + _tail(parallel) + _entry(lay, parallel)) + "\n"


def _entry(lay: Layout, parallel: bool) -> list[str]:
    """The threaded kernel's C entry point, ``entry(box)``, for a thread pool that calls a C
    function with one pointer (torch's OpenMP threads, :mod:`.team`): ``box`` holds each
    argument's address and length (``A``'s rows and columns), and the kernel runs on them."""
    if not parallel:
        return []
    return ["",
            "",
            "@numba.cfunc(numba.types.void(numba.types.voidptr), cache=True)",
            "def entry(box):",
            "    b = numba.carray(box, 14, np.int64)",
            "    kernel(numba.carray(address(b[0]), (b[1], b[2]), np.int64),",
            f"           numba.carray(address(b[3]), b[4], np.{lay.compute}),",
            "           numba.carray(address(b[5]), b[6], np.int64), numba.carray(address(b[7]), b[8], np.int64),",
            "           numba.carray(address(b[9]), b[10], np.int64), numba.carray(address(b[11]), b[12], np.int64),",
            "           numba.carray(address(b[13]), 2, np.int64))"]


def _quant_loop(program, lay: Layout) -> list[str]:
    """The 8-bit loop: per block of QBLOCK elements (the arrays rebuilt for the block, so
    the loops index from 0 and vectorise), dequantize and step, the new buffer values into
    the scratch rows and their absmax as float bits (an integer max); then quantize."""
    nb, B = len(program.buffers), QBLOCK
    first = nb + 2 + lay.extra
    lines = [f"for z in range(a, a + n, {B}):",
             f"    m = min({B}, a + n - z)"]
    lines += [f"    {line}" for line in _arrays(program, lay, "z", "m")]
    lines += [f"    q{k} = numba.carray(address(A[j, {first + k}] + 4 * (z // {B})), 1, np.float32)"
              for k in range(nb)]
    lines += [f"    x{k} = np.uint32(0)" for k in range(nb)]
    lines.append("    for i in range(m):")
    body = [f"p_ = {load(lay.p_kind, lay.compute, 'p[i]')}", f"g_ = {load(lay.grad_kind, lay.compute, 'g[i]')}"]
    body += [f"{name}_ = scaled(decode_{'signed' if sg else 'unsigned'}(b{k}[i]), q{k}[0])"  # 0 * inf scale: 0
             for k, (name, sg) in enumerate(zip(program.buffers, lay.quant))]
    body += list(program.body) + _parameter_tail(lay, program.p_out)
    for k, out in enumerate(program.buffer_out):
        body += [f"scr{k}[i] = {out}", f"x{k} = absmax_bits(x{k}, np.float32({out}))"]
    lines += [f"        {line}" for line in body]
    for k, sg in enumerate(lay.quant):
        enc = f"encode_{'signed' if sg else 'unsigned'}"
        lines += [f"    r{k} = from_bits(x{k})",
                  f"    q{k}[0] = r{k}",
                  f"    if x{k} == np.uint32(0x7F800000):  # an overflowed moment: inf stays inf, the rest 0",
                  "        for i in range(m):",
                  f"            b{k}[i] = {enc}(np.float32(np.sign(scr{k}[i])) if np.isinf(scr{k}[i]) else np.float32(0))",
                  "    else:",
                  f"        v{k} = np.float32(1) / (r{k} if r{k} > 0 else np.float32(1))",
                  "        for i in range(m):",
                  f"            b{k}[i] = {enc}(scr{k}[i] * v{k})"]
    return [f"            {line}" for line in lines]
