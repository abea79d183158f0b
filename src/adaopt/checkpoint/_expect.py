"""``load``'s ``expect``: what the caller knows of its parameters, and a checkpoint checked against it.

:func:`check_expect` turns the caller's mapping into ``{name: (shape or None, number of
elements)}``, raising the caller's own ``TypeError``/``ValueError``; :func:`check_names`
and :func:`check_shape` then refuse, as a :class:`~adaopt.checkpoint.CheckpointError`, a
file whose parameters or declared array shapes are not the expected ones, before any
array data is read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .. import quant
from ._format import CheckpointError, clip


def check_expect(expect) -> dict | None:
    """``expect`` as {name: (shape or None, number of elements)}; the caller's errors raised."""
    if expect is None:
        return None
    if not isinstance(expect, Mapping):
        raise TypeError(f"expect must map parameter names to shapes, not {type(expect).__name__}")
    out = {}
    for name, want in expect.items():
        if not isinstance(name, str):
            raise TypeError(f"expect: parameter names are strings, got {name!r}")
        shape = getattr(want, "shape", want)
        if isinstance(shape, (int, np.integer)) and not isinstance(shape, (bool, np.bool_)):
            if shape < 0:
                raise ValueError(f"expect[{name!r}]={int(shape)}: a size is >= 0")
            out[name] = (None, int(shape))
            continue
        if not isinstance(shape, (tuple, list)) or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0
                for d in shape):
            raise TypeError(f"expect[{name!r}]={clip(repr(want), 80)}: give a shape (a tuple of "
                            "ints >= 0), a number of elements or an array")
        shape = tuple(int(d) for d in shape)
        out[name] = (shape, math.prod(shape))
    return out


def check_names(meta, index, wanted, path) -> None:
    """The file's parameters are exactly the expected ones."""
    known = sorted(wanted)
    for item in index:
        if item["param"] not in wanted:
            raise CheckpointError(f"{path}: entry {item['entry']} is state of parameter "
                                  f"{item['param']!r}, not one of the expected {clip(repr(known), 200)}")
    stray = sorted(set(meta["steps"]) - set(wanted))
    if stray:
        raise CheckpointError(f"{path} holds state of parameter(s) {clip(repr(stray), 200)}, "
                              f"not among the expected {clip(repr(known), 200)}")
    missing = sorted(set(wanted) - set(meta["steps"]))
    if missing:
        raise CheckpointError(f"{path} has no state for parameter(s) {clip(repr(missing), 200)} "
                              f"of the expected {clip(repr(known), 200)}")


def check_shape(item, shape, count, wanted, path, label) -> None:
    """A state buffer's declared ``shape`` (``count`` elements) is its parameter's. A 0-d
    buffer (shape ``()``) passes: it is a per-parameter scalar such as NAdam's ``mu_product``.
    An 8-bit buffer's scales (``*_absmax``, :mod:`adaopt.quant`) have one number per block."""
    if shape == ():
        return
    want_shape, want_count = wanted[item["param"]]
    if item["key"].endswith(quant.SCALE):
        want_count = quant.n_blocks(want_count)
        want_shape = None if want_shape is None else (want_count,)
    if (want_shape is not None and shape != want_shape) or count != want_count:
        have = f"shape {want_shape}" if want_shape is not None else f"{want_count} elements"
        raise CheckpointError(f"{path}: {label} declares shape {shape} ({count} elements); "
                              f"parameter {item['param']!r} has {have}")
