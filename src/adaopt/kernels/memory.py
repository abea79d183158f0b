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


def _has_pause() -> bool:
    """Whether the CPU has x86's ``pause``, the hint for a spin-wait loop that lets the other
    hardware thread of the core run while this one waits (elsewhere the loops spin bare)."""
    import platform

    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def spin_pause(typingctx):
    """One ``pause`` where the CPU has it (:func:`_has_pause`), else nothing. With it a read of
    the spin loops costs about 25 ns on this AMD EPYC VM, without it 0.27 ns."""
    sig = types.void()
    pause = _has_pause()

    def codegen(context, builder, signature, args):
        if pause:
            fn = builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(fn, [])

    return sig, codegen


@numba.njit(nogil=True, cache=True)
def watch(addr, seen, reads):
    """Read the int64 at ``addr`` until it passes ``seen`` (True) or ``reads`` reads are done
    (False), a :func:`spin_pause` after each (:mod:`.threads`: a worker watching for the next
    call)."""
    for _ in range(reads):
        if load_acquire(addr) > seen:
            return True
        spin_pause()
    return False


@numba.njit(cache=True)
def gather(arrays, count, table, row, column):
    """``table[row + k, column] = address of arrays[k]`` for k < count (the tuple may be
    padded past ``count``)."""
    for k in range(count):
        table[row + k, column] = arrays[k].ctypes.data
