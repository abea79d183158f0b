"""Arrays by address inside numba loops.

A fused kernel steps every tensor of a bucket in one call, so it cannot take the
tensors as arguments (a tuple is compiled for its length). It takes a table of addresses instead, one row per tensor, and
rebuilds each array inside the loop::

    p = numba.carray(address(A[j, 0] + itemsize * start), n, np.float32)

``address`` turns an integer into a pointer; :func:`gather` writes the addresses of
NumPy arrays into a column of that table at C speed (``arr.ctypes.data`` costs about
2 us an array in Python, a tenth of that here).

Whoever fills the table keeps the arrays alive and vouches for them: C-contiguous, of
the kernel's storage dtype, and at least as long as the table says.

The threaded kernel's threads share out a bucket's work groups through two counters (next
group to claim, groups done) that :func:`fetch_add` and :func:`load_acquire` read and
write atomically (:mod:`.threads`).
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


@intrinsic
def fetch_add(typingctx, addr, delta):
    """Atomically add ``delta`` to the int64 at address ``addr``; returns the value before
    (sequentially consistent: what this thread wrote before is seen by whoever reads after)."""
    sig = types.int64(types.int64, types.int64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.atomic_rmw("add", ptr, args[1], "seq_cst")

    return sig, codegen


@intrinsic
def load_acquire(typingctx, addr):
    """The int64 at address ``addr``, read atomically (what was written before the matching
    :func:`fetch_add` is seen after it)."""
    sig = types.int64(types.int64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@numba.njit(cache=True)
def gather(arrays, count, table, row, column):
    """``table[row + k, column] = address of arrays[k]`` for k < count (the tuple may be
    padded past ``count``)."""
    for k in range(count):
        table[row + k, column] = arrays[k].ctypes.data
