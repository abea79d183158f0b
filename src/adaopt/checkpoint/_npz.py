"""Reading a checkpoint's zip members without pickle, each size checked before any data is read.

The zip directory's entries must lie inside the file; a member's ``.npy`` header gives
its shape and dtype, which must account for exactly the bytes the entry holds; the
compressed members together must stay within the inflation allowance; only then is the
data read, in chunks, into one array. ``__meta__`` is read the same way and parsed as
JSON. Every problem is a :class:`~adaopt.checkpoint.CheckpointError` naming the file and
the entry.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ._format import INFLATION_RATIO, MAX_INFLATED_BYTES, MAX_META_BYTES, CheckpointError, clip

META = "__meta__.npy"
_CHUNK = 16 * 2**20


def members(zf: zipfile.ZipFile, path: Path, file_size: int) -> dict[str, zipfile.ZipInfo]:
    """The zip's entries by name, once each, with ``__meta__`` among them, each unencrypted
    and inside the file's ``file_size`` bytes, a stored one holding what it claims."""
    found = {}
    for info in zf.infolist():
        if info.filename in found:
            raise CheckpointError(f"{path} holds entry {info.filename!r} twice")
        found[info.filename] = info
    if META not in found:
        raise CheckpointError(f"{path} is not an adaopt checkpoint (no __meta__ entry)")
    for name, info in found.items():
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{path}: entry {name!r} is encrypted")
        if info.header_offset + info.compress_size > file_size:
            raise CheckpointError(f"{path}: entry {name!r} claims {info.compress_size} bytes "
                                  f"at offset {info.header_offset}, past the end of the file "
                                  f"({file_size} bytes): truncated or forged")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise CheckpointError(f"{path}: stored entry {name!r} claims {info.file_size} bytes "
                                  f"but holds {info.compress_size}")
    return found


def compressed(info: zipfile.ZipInfo) -> bool:
    return info.compress_type != zipfile.ZIP_STORED


class Inflation:
    """The bytes the compressed members inflate to, counted against the file's allowance:
    :data:`~adaopt.checkpoint.MAX_INFLATED_BYTES`, or 16 times its size if that is more."""

    def __init__(self, path: Path, file_size: int, meta: zipfile.ZipInfo):
        self.path, self.file_size = path, file_size
        self.limit = max(MAX_INFLATED_BYTES, INFLATION_RATIO * file_size)
        self.total = meta.file_size if compressed(meta) else 0

    def add(self, info: zipfile.ZipInfo, label: str) -> None:
        if not compressed(info):
            return
        self.total += info.file_size
        if self.total > self.limit:
            raise CheckpointError(
                f"{self.path}: {label} is compressed {info.compress_size} -> {info.file_size} bytes; "
                f"the compressed entries would inflate to {self.total} bytes, more than the "
                f"{self.limit} allowed for a file of {self.file_size} bytes (a zip bomb?). adaopt's "
                "save writes entries uncompressed")


def header(zf, info, path, label):
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
            raise CheckpointError(f"{path}: {label} has a malformed .npy header ({clip(str(exc))})") from exc
        offset = f.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise CheckpointError(f"{path}: {label} holds {dtype} data, not a plain numeric array "
                              "(objects would need pickle, which a checkpoint never uses)")
    return tuple(int(d) for d in shape), bool(fortran), dtype, offset


def check_size(info, offset, nbytes, path, label, what):
    """The entry holds exactly the ``nbytes`` its header declares after the ``offset`` bytes of header."""
    holds = info.file_size - offset
    if nbytes != holds:
        raise CheckpointError(f"{path}: {label} declares {what}, {nbytes} bytes of data, but the "
                              f"entry holds {holds}")


def data(zf, info, shape, fortran, dtype, count, offset, path, label) -> np.ndarray:
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


def read_meta(zf, info, path) -> object:
    """``__meta__`` parsed: uint8 bytes, at most :data:`~adaopt.checkpoint.MAX_META_BYTES`,
    of UTF-8 JSON not nested too deeply to parse. Its schema is not checked here."""
    label = "entry __meta__"
    shape, fortran, dtype, offset = header(zf, info, path, label)
    if dtype != np.uint8 or len(shape) != 1:
        raise CheckpointError(f"{path}: {label} is a {dtype} array of shape {shape}, "
                              "not the uint8 bytes of a JSON text")
    if shape[0] > MAX_META_BYTES:
        raise CheckpointError(f"{path}: {label} declares {shape[0]} bytes, more than the "
                              f"{MAX_META_BYTES} a checkpoint's index may take")
    check_size(info, offset, shape[0], path, label, f"{shape[0]} bytes")
    raw = data(zf, info, shape, fortran, dtype, shape[0], offset, path, label).tobytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: {label} is not UTF-8 text ({exc})") from exc
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise CheckpointError(f"{path}: {label} is JSON nested too deeply to be an index") from exc
    except ValueError as exc:  # JSONDecodeError, and integers beyond int()'s digit limit
        raise CheckpointError(f"{path}: {label} is not valid JSON ({clip(str(exc))})") from exc
