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

from . import dtypes
from ._io import atomic_write

FORMAT = "adaopt-checkpoint"
VERSION = 1

#: The largest ``__meta__`` accepted, in bytes (a checkpoint of 100,000 arrays needs ~10 MB).
MAX_META_BYTES = 64 * 2**20
#: Compressed members (``save`` never writes any; ``np.savez_compressed`` does) may inflate
#: to at most this many bytes in all, or 16 times the file's size if that is more. Stored
#: members hold their bytes in the file itself, so they are bounded by its size.
MAX_INFLATED_BYTES = 256 * 2**20
_INFLATION_RATIO = 16
_CHUNK = 16 * 2**20
_LOW_LEVEL = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError,
              NotImplementedError, RuntimeError, OverflowError, KeyError, TypeError, AttributeError)


class CheckpointError(ValueError):
    """A checkpoint or state_dict that cannot be loaded, and why."""


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
            if not dtypes.is_supported(value.dtype):
                raise TypeError(f"cannot save buffer {name!r}.{key}: dtype {value.dtype.name} is not one "
                                f"of {', '.join(dtypes.SUPPORTED)}")
            entry = f"a{len(index)}"
            dt = dtypes.dtype_name(value.dtype)
            arrays[entry] = value.view(np.uint16) if dt == "bfloat16" else value
            index.append({"entry": entry, "param": name, "key": key, "dtype": dt})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "optimizer": state_dict.get("optimizer"),
        "conventions": state_dict.get("conventions"),
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
    wanted = _check_expect(expect)
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
    except RecursionError as exc:  # defensive: the parse itself is guarded in _read_meta
        raise CheckpointError(f"{path}: {where[0]} is nested too deeply") from exc
    except _LOW_LEVEL as exc:
        raise CheckpointError(f"{path} is not a readable adaopt checkpoint ({where[0]}): "
                              f"{type(exc).__name__}: {_clip(str(exc))}") from exc
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


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _check_expect(expect) -> dict | None:
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
            raise TypeError(f"expect[{name!r}]={_clip(repr(want), 80)}: give a shape (a tuple of "
                            "ints >= 0), a number of elements or an array")
        shape = tuple(int(d) for d in shape)
        out[name] = (shape, math.prod(shape))
    return out


def _read(zf: zipfile.ZipFile, path: Path, file_size: int, wanted, where: list) -> dict:
    members = {}
    for info in zf.infolist():
        if info.filename in members:
            raise CheckpointError(f"{path} holds entry {info.filename!r} twice")
        members[info.filename] = info
    if "__meta__.npy" not in members:
        raise CheckpointError(f"{path} is not an adaopt checkpoint (no __meta__ entry)")
    for name, info in members.items():  # bounds of the zip entries themselves
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{path}: entry {name!r} is encrypted")
        if info.header_offset + info.compress_size > file_size:
            raise CheckpointError(f"{path}: entry {name!r} claims {info.compress_size} bytes "
                                  f"at offset {info.header_offset}, past the end of the file "
                                  f"({file_size} bytes): truncated or forged")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise CheckpointError(f"{path}: stored entry {name!r} claims {info.file_size} bytes "
                                  f"but holds {info.compress_size}")

    where[0] = "entry __meta__"
    meta = _read_meta(zf, members["__meta__.npy"], path)
    index = _check_meta(meta, path)

    known = {item["entry"] + ".npy" for item in index} | {"__meta__.npy"}
    unknown = sorted(set(members) - known)
    if unknown:
        shown = ", ".join(repr(n.removesuffix(".npy")) for n in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise CheckpointError(f"{path} holds entries its index does not mention: {shown}{more}")
    if wanted is not None:
        _check_names(meta, index, wanted, path)

    # every header first: nothing is read, inflated or allocated before all sizes are checked
    headers = []
    limit = max(MAX_INFLATED_BYTES, _INFLATION_RATIO * file_size)
    inflated = members["__meta__.npy"].file_size if _compressed(members["__meta__.npy"]) else 0
    for item in index:
        name = item["entry"] + ".npy"
        label = f"entry {item['entry']} ({item['param']!r}.{item['key']})"
        if name not in members:
            raise CheckpointError(f"{path} is missing array {item['entry']} "
                                  f"({item['param']}.{item['key']})")
        where[0] = label
        info = members[name]
        shape, fortran, dtype, offset = _header(zf, info, path, label)
        stored = "uint16" if item["dtype"] == "bfloat16" else item["dtype"]
        if dtype.name != stored:
            raise CheckpointError(f"{path}: array {item['param']}.{item['key']} ({label}) has dtype "
                                  f"{dtype.name}, the index says {item['dtype']}")
        count = math.prod(shape)
        if wanted is not None and shape != ():  # 0-d: a per-parameter scalar (NAdam's mu_product)
            want_shape, want_count = wanted[item["param"]]
            if (want_shape is not None and shape != want_shape) or count != want_count:
                have = f"shape {want_shape}" if want_shape is not None else f"{want_count} elements"
                raise CheckpointError(f"{path}: {label} declares shape {shape} ({count} elements); "
                                      f"parameter {item['param']!r} has {have}")
        _check_size(info, offset, count * dtype.itemsize, path, label, f"shape {shape} {dtype.name}")
        if _compressed(info):
            inflated += info.file_size
            if inflated > limit:
                raise CheckpointError(
                    f"{path}: {label} is compressed {info.compress_size} -> {info.file_size} bytes; "
                    f"the compressed entries would inflate to {inflated} bytes, more than the "
                    f"{limit} allowed for a file of {file_size} bytes (a zip bomb?). adaopt's "
                    "save writes entries uncompressed")
        headers.append((item, info, shape, fortran, dtype, count, offset))

    state = {name: {"step": step} for name, step in meta["steps"].items()}
    for item, info, shape, fortran, dtype, count, offset in headers:
        where[0] = f"entry {item['entry']} ({item['param']!r}.{item['key']})"
        arr = _data(zf, info, shape, fortran, dtype, count, offset, path, where[0])
        if item["dtype"] == "bfloat16":
            arr = arr.view(dtypes.as_dtype("bfloat16"))
        state[item["param"]][item["key"]] = arr
    return {
        "optimizer": meta.get("optimizer"),
        "conventions": meta.get("conventions"),
        "state": state,
        "param_groups": meta["param_groups"],
    }


def _compressed(info: zipfile.ZipInfo) -> bool:
    return info.compress_type != zipfile.ZIP_STORED


def _header(zf, info, path, label):
    """(shape, fortran_order, dtype, offset of the data) from a member's .npy header."""
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
        except ValueError as exc:
            raise CheckpointError(f"{path}: {label} is not a .npy array ({exc})") from exc
        if version == (1, 0):
            read = np.lib.format.read_array_header_1_0
        elif version == (2, 0):
            read = np.lib.format.read_array_header_2_0
        else:
            raise CheckpointError(f"{path}: {label} is a .npy of format version {version}; "
                                  "adaopt reads versions 1.0 and 2.0")
        try:
            shape, fortran, dtype = read(f)
        except ValueError as exc:
            raise CheckpointError(f"{path}: {label} has a malformed .npy header ({_clip(str(exc))})") from exc
        offset = f.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise CheckpointError(f"{path}: {label} holds {dtype} data, not a plain numeric array "
                              "(objects would need pickle, which a checkpoint never uses)")
    return tuple(int(d) for d in shape), bool(fortran), dtype, offset


def _check_size(info, offset, nbytes, path, label, what):
    holds = info.file_size - offset
    if nbytes != holds:
        raise CheckpointError(f"{path}: {label} declares {what}, {nbytes} bytes of data, but the "
                              f"entry holds {holds}")


def _data(zf, info, shape, fortran, dtype, count, offset, path, label) -> np.ndarray:
    """The array data of a member whose header (``offset`` bytes) and size were checked;
    read in chunks into one array, so memory is the array's size. Reading to the end of
    the entry makes zipfile check its CRC."""
    buf = np.empty(count, dtype=dtype)
    view = memoryview(buf.view(np.uint8)) if count else memoryview(bytearray())
    nbytes = count * dtype.itemsize
    with zf.open(info) as f:
        if len(f.read(offset)) != offset:
            raise CheckpointError(f"{path}: {label} ends inside its .npy header")
        pos = 0
        while pos < nbytes:
            chunk = f.read(min(_CHUNK, nbytes - pos))
            if not chunk:
                raise CheckpointError(f"{path}: {label} ends after {pos} of its {nbytes} bytes")
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        if f.read(1):
            raise CheckpointError(f"{path}: {label} holds more than its {nbytes} bytes")
    if fortran and len(shape) > 1:
        arr = buf.reshape(shape[::-1]).T
    else:
        arr = buf.reshape(shape)
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def _read_meta(zf, info, path) -> object:
    label = "entry __meta__"
    shape, fortran, dtype, offset = _header(zf, info, path, label)
    if dtype != np.uint8 or len(shape) != 1:
        raise CheckpointError(f"{path}: {label} is a {dtype} array of shape {shape}, "
                              "not the uint8 bytes of a JSON text")
    if shape[0] > MAX_META_BYTES:
        raise CheckpointError(f"{path}: {label} declares {shape[0]} bytes, more than the "
                              f"{MAX_META_BYTES} a checkpoint's index may take")
    _check_size(info, offset, shape[0], path, label, f"{shape[0]} bytes")
    raw = _data(zf, info, shape, fortran, dtype, shape[0], offset, path, label).tobytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: {label} is not UTF-8 text ({exc})") from exc
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise CheckpointError(f"{path}: {label} is JSON nested too deeply to be an index") from exc
    except ValueError as exc:  # JSONDecodeError, and integers beyond int()'s digit limit
        raise CheckpointError(f"{path}: {label} is not valid JSON ({_clip(str(exc))})") from exc


# --------------------------------------------------------------------------- the index's schema

_SCALARS = (bool, int, float, str, type(None))
_MAX_LIST = 64  # a hyperparameter that is a list (betas) holds a few numbers


def _check_meta(meta, path) -> list:
    """Check ``__meta__``'s structure; return its array index. Every problem names the entry."""
    def bad(entry, problem):
        raise CheckpointError(f"{path}: __meta__ entry {entry} {problem}")

    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not an adaopt checkpoint (__meta__ is a JSON "
                              f"{type(meta).__name__}, not an object)")
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise CheckpointError(f"{path} is not an adaopt checkpoint (format {_clip(repr(fmt), 80)})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {_clip(repr(meta.get('version')), 80)}; "
                              f"this adaopt reads version {VERSION}")
    for key in ("param_groups", "steps", "arrays"):
        if key not in meta:
            bad(repr(key), "is missing")
    for key in ("optimizer", "conventions"):
        if not isinstance(meta.get(key), (str, type(None))):
            bad(repr(key), f"is {_clip(repr(meta[key]), 80)}; a string is needed")

    groups = meta["param_groups"]
    if not isinstance(groups, list):
        bad("'param_groups'", f"is a {type(groups).__name__}; a list of groups is needed")
    for gi, group in enumerate(groups):
        entry = f"param_groups[{gi}]"
        if not isinstance(group, dict):
            bad(entry, f"is a {type(group).__name__}; a group is an object")
        names = group.get("params")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            bad(f"{entry}.params", f"is {_clip(repr(names), 80)}; a list of parameter names "
                                   "(strings) is needed")
        for key, value in group.items():
            if key == "params":
                continue
            ok = isinstance(value, _SCALARS) or (
                isinstance(value, list) and len(value) <= _MAX_LIST
                and all(isinstance(v, _SCALARS) for v in value))
            if not ok:
                bad(f"{entry}.{key}", f"is {_clip(repr(value), 80)}; a hyperparameter is a number, "
                                      "a flag, a string, null or a short list of numbers")

    steps = meta["steps"]
    if not isinstance(steps, dict):
        bad("'steps'", f"is a {type(steps).__name__}; an object of parameter steps is needed")
    for n, v in steps.items():
        if type(v) is not int or v < 0:
            raise CheckpointError(f"{path}: parameter {n!r} has step={_clip(repr(v), 80)}; "
                                  "steps must be integers >= 0")

    index = meta["arrays"]
    if not isinstance(index, list):
        bad("'arrays'", f"is a {type(index).__name__}; a list of array records is needed")
    entries, buffers = set(), set()
    for i, item in enumerate(index):
        entry = f"arrays[{i}]"
        if not isinstance(item, dict):
            bad(entry, f"is a {type(item).__name__}; an object with entry, param, key and dtype is needed")
        for field in ("entry", "param", "key", "dtype"):
            if field not in item:
                bad(entry, f"has no {field!r}")
            if not isinstance(item[field], str):
                bad(f"{entry}.{field}", f"is {_clip(repr(item[field]), 80)}; a string is needed")
        if item["entry"] == "__meta__" or item["entry"] in entries:
            bad(entry, f"names the entry {item['entry']!r} "
                       f"{'that holds the index' if item['entry'] == '__meta__' else 'twice'}")
        entries.add(item["entry"])
        if item["key"] == "step":
            bad(f"{entry}.key", "is 'step', which is kept in 'steps', not as an array")
        if (item["param"], item["key"]) in buffers:
            bad(entry, f"stores {item['param']!r}.{item['key']} a second time")
        buffers.add((item["param"], item["key"]))
        if item["dtype"] not in dtypes.SUPPORTED:
            bad(f"{entry}.dtype", f"is {_clip(repr(item['dtype']), 80)}; one of "
                                  f"{', '.join(dtypes.SUPPORTED)} is needed")
        if item["param"] not in steps:
            bad(entry, f"is state of parameter {item['param']!r}, which has no step in 'steps'")
    return index


def _check_names(meta, index, wanted, path) -> None:
    """With ``expect``: the file's parameters are exactly the expected ones."""
    known = sorted(wanted)
    for item in index:
        if item["param"] not in wanted:
            raise CheckpointError(f"{path}: entry {item['entry']} is state of parameter "
                                  f"{item['param']!r}, not one of the expected {_clip(repr(known), 200)}")
    stray = sorted(set(meta["steps"]) - set(wanted))
    if stray:
        raise CheckpointError(f"{path} holds state of parameter(s) {_clip(repr(stray), 200)}, "
                              f"not among the expected {_clip(repr(known), 200)}")
    missing = sorted(set(wanted) - set(meta["steps"]))
    if missing:
        raise CheckpointError(f"{path} has no state for parameter(s) {_clip(repr(missing), 200)} "
                              f"of the expected {_clip(repr(known), 200)}")
