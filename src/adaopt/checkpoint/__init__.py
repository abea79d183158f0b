"""Checkpoints on disk: a NumPy ``.npz`` archive read without pickle.

Layout: one array per state buffer (entries ``a0``, ``a1``, ...) and one entry
``__meta__`` holding UTF-8 JSON: the optimizer, its conventions, the parameter
groups' hyperparameters, each parameter's step, and for every array the parameter
name, buffer name and dtype it belongs to. bfloat16 arrays are stored as their
uint16 bit patterns and restored exactly.

Writing goes through :func:`adaopt._io.atomic_write`: a temporary file in the same
folder, fsynced and renamed into place, so a crash or ``kill -9`` never leaves half a
checkpoint, and the temporary file a killed writer leaves is removed by the next write
into that folder.

Reading trusts nothing in the file. Only a regular file is opened (a FIFO would block
forever); every member's shape and dtype are read from its ``.npy`` header and checked
against the index, against the size the zip entry holds and, with ``expect``, against
the caller's parameters, all before any array data is read, so a zip bomb or a header
declaring a trillion elements is refused without inflating or allocating it. Every
problem is a :class:`CheckpointError` naming the file and the entry.

This module writes and loads; the parts of loading are its private modules:
``_npz`` reads the zip members (bounds, ``.npy`` headers, sizes, the inflation
allowance, the data), ``_schema`` checks ``__meta__``'s structure, ``_expect`` checks
the file against the caller's ``expect``, and ``_format`` holds the format's name,
version, limits and :class:`CheckpointError`.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .. import dtypes, quant
from .._io import atomic_write
from . import _npz
from ._expect import check_expect, check_names, check_shape
from ._format import FORMAT, MAX_INFLATED_BYTES, MAX_META_BYTES, VERSION, CheckpointError, clip
from ._schema import check_meta

__all__ = ["FORMAT", "MAX_INFLATED_BYTES", "MAX_META_BYTES", "VERSION", "CheckpointError", "load", "save"]

_LOW_LEVEL = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError,
              NotImplementedError, RuntimeError, OverflowError, KeyError, TypeError, AttributeError)


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.dtype) or (value is not None and dtypes.is_supported(value)
                                       and not isinstance(value, str)):
        return dtypes.dtype_name(value)
    return value


# --------------------------------------------------------------------------- save


def save(state_dict: dict, path) -> None:
    """Write ``state_dict`` (from ``Optimizer.state_dict()``) to ``path`` atomically.

    A state this module could not load back (a parameter name that is not a string, a
    buffer of an unsupported dtype, a buffer named ``step``) raises before anything is
    written. ``OSError`` is the file system's; the previous file at ``path`` is then
    untouched and no temporary file is left.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    index = []
    steps = {}
    for name, st in state_dict["state"].items():
        if not isinstance(name, str):
            raise TypeError(f"cannot save the state of parameter {name!r}: names must be strings")
        if not isinstance(st, Mapping) or "step" not in st:
            raise TypeError(f"cannot save the state of parameter {name!r}: a dict with a 'step' is needed")
        steps[name] = int(st["step"])
        for key, value in st.items():
            if key == "step":
                continue
            if not isinstance(key, str):
                raise TypeError(f"cannot save buffer {key!r} of parameter {name!r}: names must be strings")
            value = np.asarray(value)
            if not dtypes.is_stored(value.dtype):
                raise TypeError(f"cannot save buffer {name!r}.{key}: dtype {value.dtype.name} is not one "
                                f"of {', '.join(dtypes.STORED)}")
            entry = f"a{len(index)}"
            dt = dtypes.dtype_name(value.dtype)
            arrays[entry] = value.view(np.uint16) if dt == "bfloat16" else value
            index.append({"entry": entry, "param": name, "key": key, "dtype": dt})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "optimizer": state_dict.get("optimizer"),
        "conventions": state_dict.get("conventions"),
        **({quant.MAP_KEY: state_dict[quant.MAP_KEY]} if quant.MAP_KEY in state_dict else {}),
        "param_groups": [{k: _jsonable(v) for k, v in g.items()} for g in state_dict["param_groups"]],
        "steps": steps,
        "arrays": index,
    }
    text = json.dumps(meta).encode()
    if len(text) > MAX_META_BYTES:
        raise ValueError(f"cannot save {path}: its index would take {len(text)} bytes, "
                         f"more than the {MAX_META_BYTES} a checkpoint may hold")
    arrays["__meta__"] = np.frombuffer(text, dtype=np.uint8)
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


# --------------------------------------------------------------------------- load


def load(path, expect: Mapping | None = None) -> dict:
    """Read a checkpoint written by :func:`save` back into a state_dict.

    ``expect``, when given, maps each parameter name to what the caller knows of it:
    its shape (a tuple or list of ints), its number of elements (an int), or the array
    itself (anything with a ``.shape``). Then, before any array data is read, every
    parameter in the file must be one of ``expect`` and every one of ``expect`` must be
    in the file, and every state buffer's declared shape (or size) must be the
    parameter's; so a file of the wrong model, or one that lies about its sizes, is
    refused without reading it. ``Optimizer.load`` passes its own parameters. A malformed
    ``expect`` is the caller's ``TypeError``/``ValueError``, not a CheckpointError.

    Without ``expect``, sizes are still checked before reading: each ``.npy`` header's
    declared size must be exactly what its zip entry holds, a stored entry must lie inside
    the file, compressed entries may inflate to :data:`MAX_INFLATED_BYTES` in all (or 16
    times the file's size), and ``__meta__`` to :data:`MAX_META_BYTES`.

    Raises ``FileNotFoundError`` when nothing is at ``path``, and :class:`CheckpointError`
    (a ValueError) naming the file and the entry for anything else that is not an intact
    adaopt checkpoint: not a regular file (a FIFO, a directory, a device), not a zip,
    members the index does not mention, a malformed or deeply nested ``__meta__``, a
    dtype, shape or size that does not match, an object array (no pickle is ever used).
    """
    path = Path(path)
    wanted = check_expect(expect)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}") from None
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be opened as a checkpoint: {exc}") from exc
    where = ["the zip directory"]
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path} is not a regular file ({_kind(info.st_mode)}); "
                                  "a checkpoint is a file written by adaopt's save")
        with os.fdopen(fd, "rb") as fh:
            fd = None
            with zipfile.ZipFile(fh) as zf:
                return _read(zf, path, info.st_size, wanted, where)
    except CheckpointError:
        raise
    except RecursionError as exc:  # defensive: the parse itself is guarded in _npz.read_meta
        raise CheckpointError(f"{path}: {where[0]} is nested too deeply") from exc
    except _LOW_LEVEL as exc:
        raise CheckpointError(f"{path} is not a readable adaopt checkpoint ({where[0]}): "
                              f"{type(exc).__name__}: {clip(str(exc))}") from exc
    finally:
        if fd is not None:
            os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def _read(zf: zipfile.ZipFile, path: Path, file_size: int, wanted, where: list) -> dict:
    """The state_dict in ``zf``: its members bounded, ``__meta__`` read and checked, every
    array's header checked, and only then the arrays read. ``where[0]`` names the entry
    being read, for :func:`load`'s message should a low-level error escape."""
    members = _npz.members(zf, path, file_size)
    where[0] = "entry __meta__"
    meta = _npz.read_meta(zf, members[_npz.META], path)
    index = check_meta(meta, path)
    _check_mentioned(members, index, path)
    if wanted is not None:
        check_names(meta, index, wanted, path)
    headers = _headers(zf, members, index, path, file_size, wanted, where)
    return {
        "optimizer": meta.get("optimizer"),
        "conventions": meta.get("conventions"),
        "state": _arrays(zf, headers, meta["steps"], path, where),
        "param_groups": meta["param_groups"],
        **({quant.MAP_KEY: meta[quant.MAP_KEY]} if quant.MAP_KEY in meta else {}),
    }


def _label(item) -> str:
    return f"entry {item['entry']} ({item['param']!r}.{item['key']})"


def _check_mentioned(members, index, path) -> None:
    """Every member of the zip is ``__meta__`` or an array of the index."""
    known = {item["entry"] + ".npy" for item in index} | {_npz.META}
    unknown = sorted(set(members) - known)
    if unknown:
        shown = ", ".join(repr(n.removesuffix(".npy")) for n in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise CheckpointError(f"{path} holds entries its index does not mention: {shown}{more}")


def _headers(zf, members, index, path, file_size, wanted, where) -> list:
    """Every array's ``.npy`` header, checked against the index (dtype), ``expect``
    (shape), its entry (size) and the inflation allowance: nothing is read, inflated or
    allocated before all sizes are checked."""
    inflation = _npz.Inflation(path, file_size, members[_npz.META])
    headers = []
    for item in index:
        name, label = item["entry"] + ".npy", _label(item)
        if name not in members:
            raise CheckpointError(f"{path} is missing array {item['entry']} "
                                  f"({item['param']}.{item['key']})")
        where[0] = label
        info = members[name]
        shape, fortran, dtype, offset = _npz.header(zf, info, path, label)
        stored = "uint16" if item["dtype"] == "bfloat16" else item["dtype"]
        if dtype.name != stored:
            raise CheckpointError(f"{path}: array {item['param']}.{item['key']} ({label}) has dtype "
                                  f"{dtype.name}, the index says {item['dtype']}")
        count = math.prod(shape)
        if wanted is not None:
            check_shape(item, shape, count, wanted, path, label)
        _npz.check_size(info, offset, count * dtype.itemsize, path, label, f"shape {shape} {dtype.name}")
        inflation.add(info, label)
        headers.append((item, info, shape, fortran, dtype, count, offset))
    return headers


def _arrays(zf, headers, steps, path, where) -> dict:
    """The state: each parameter's step and its buffers, read from the checked members;
    bfloat16 buffers viewed back from their uint16 bits."""
    state = {name: {"step": step} for name, step in steps.items()}
    for item, info, shape, fortran, dtype, count, offset in headers:
        where[0] = _label(item)
        arr = _npz.data(zf, info, shape, fortran, dtype, count, offset, path, where[0])
        if item["dtype"] == "bfloat16":
            arr = arr.view(dtypes.as_dtype("bfloat16"))
        state[item["param"]][item["key"]] = arr
    return state
