r"""The Python source of a fused kernel: a recorded rule inside the multi-tensor loop.

A :class:`Layout` says how a bucket's numbers are stored and rounded:

``p_kind``
    the parameters' and gradients' dtype (float16/bfloat16 as their uint16 bits);
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

    * ``"stochastic"`` (bfloat16): :math:`p_t` = the bits of :math:`x` plus 16 random bits,
      truncated (:func:`.lowp.sr_bf16`). The table's column holds the SplitMix64 base
      ``key * 2**32 + step`` (an integer, not an address), so element ``a + i`` of a work
      item gets the bits :func:`adaopt.rounding.random_bits` gives it, whatever the
      threads and the work items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROUNDINGS = ("nearest", "kahan", "stochastic")
_HALF = {"float16": ("f16_to_f32", "f32_to_f16"), "bfloat16": ("bf16_to_f32", "f32_to_bf16")}


@dataclass(frozen=True)
class Layout:
    """Storage and rounding of one bucket (see the module's docstring)."""

    p_kind: str
    s_kind: str
    compute: str
    rounding: str = "nearest"

    @property
    def extra(self) -> int:
        """Table columns after the state buffers: the compensation or the SR base."""
        return 0 if self.rounding == "nearest" else 1


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
        return [f"y_ = (np.{c}({x}) - p_) + {load(kind, c, 'c[i]')}",
                f"r_ = {store(kind, 'p_ + y_')}",
                "p[i] = r_",
                f"c[i] = {store(kind, f'y_ - ({rounded} - p_)')}"]
    if lay.rounding == "stochastic":
        return [f"p[i] = sr_bf16(np.float32({x}), np.uint64(i) * GOLDEN + sb)"]
    return [f"p[i] = {store(lay.p_kind, x)}"]


def _buffer_lines(lay: Layout, buffers, outs) -> tuple[list[str], list[str]]:
    """Loads and stores of the state buffers, in their storage kind."""
    same = lay.s_kind == lay.compute
    loads = [f"{name}_ = b{k}[i]" if same else f"{name}_ = {load(lay.s_kind, lay.compute, f'b{k}[i]')}"
             for k, name in enumerate(buffers)]
    stores = [f"b{k}[i] = {out}" if same else f"b{k}[i] = {store(lay.s_kind, out)}"
              for k, out in enumerate(outs)]
    return loads, stores


def source(program, lay: Layout, parallel: bool) -> str:
    """The kernel for ``program`` stored as ``lay`` says.

    Each work item's arrays are rebuilt from the address table and start at element 0,
    so the inner loop vectorises.
    """
    nb = len(program.buffers)
    p_store, s_store = storage(lay.p_kind), storage(lay.s_kind)
    p_size, s_size = np.dtype(p_store).itemsize, np.dtype(s_store).itemsize
    lines = [
        "import numpy as np",
        "import numba",
        "from adaopt.kernels.lowp import f16_to_f32, f32_to_f16, bf16_to_f32, f32_to_bf16, sr_bf16, GOLDEN, MIX2",
        "from adaopt.kernels.memory import address",
        "",
        f"@numba.njit(error_model='numpy', cache=True, parallel={parallel})",
        "def kernel(A, S, GS, WJ, WA, WB):",
    ]
    lines += [f"    s{k} = S[{k}]" for k in range(len(program.scalars))]
    lines += [f"    for w in {'numba.prange' if parallel else 'range'}(GS.shape[0] - 1):",
              "        for it in range(GS[w], GS[w + 1]):",
              "            j = WJ[it]",
              "            a = WA[it]",
              "            n = WB[it] - a",
              f"            p = numba.carray(address(A[j, 0] + {p_size} * a), n, np.{p_store})",
              f"            g = numba.carray(address(A[j, 1] + {p_size} * a), n, np.{p_store})"]
    lines += [f"            b{k} = numba.carray(address(A[j, {k + 2}] + {s_size} * a), n, np.{s_store})"
              for k in range(nb)]
    if lay.rounding == "kahan":
        lines.append(f"            c = numba.carray(address(A[j, {nb + 2}] + {p_size} * a), n, np.{p_store})")
    elif lay.rounding == "stochastic":  # (a + 1 + i) * GOLDEN + base * MIX2, the part fixed per item
        lines.append(f"            sb = np.uint64(a + 1) * GOLDEN + np.uint64(A[j, {nb + 2}]) * MIX2")
    lines.append("            for i in range(n):")
    loads, stores = _buffer_lines(lay, program.buffers, program.buffer_out)
    body = [f"p_ = {load(lay.p_kind, lay.compute, 'p[i]')}", f"g_ = {load(lay.p_kind, lay.compute, 'g[i]')}"]
    body += loads + list(program.body) + _parameter_tail(lay, program.p_out) + stores
    lines += [f"                {line}" for line in body]
    return "\n".join(lines) + "\n"
