"""Arrays by address inside numba loops.

A fused kernel steps every tensor of a bucket in one call, so it cannot take the
tensors as arguments (a tuple is compiled for its length, and a parallel region takes
at most 100 of them). It takes a table of addresses instead, one row per tensor, and
rebuilds each array inside the loop::

    p = numba.carray(address(A[j, 0] + itemsize * start), n, np.float32)

``address`` turns an integer into a pointer; :func:`gather` writes the addresses of
NumPy arrays into a column of that table at C speed (``arr.ctypes.data`` costs about
2 us an array in Python, a tenth of that here).

Whoever fills the table keeps the arrays alive and vouches for them: C-contiguous, of
the kernel's storage dtype, and at least as long as the table says.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def address(typingctx, addr):
    """The integer ``addr`` as a ``void*`` (for ``numba.carray``)."""
    sig = types.voidptr(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return sig, codegen


@numba.njit(cache=True)
def gather(arrays, count, table, row, column):
    """``table[row + k, column] = address of arrays[k]`` for k < count (the tuple may be
    padded past ``count``)."""
    for k in range(count):
        table[row + k, column] = arrays[k].ctypes.data
