"""Checkpoints on disk: a NumPy ``.npz`` archive read without pickle.

Layout: one array per state buffer (entries ``a0``, ``a1``, ...) and one entry
``__meta__`` holding UTF-8 JSON: the optimizer, its conventions, the parameter
groups' hyperparameters, each parameter's step, and for every array the parameter
name, buffer name and dtype it belongs to. bfloat16 arrays are stored as their
uint16 bit patterns and restored exactly. Files are written to a temporary file in
the same folder and renamed into place, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import dtypes

FORMAT = "adaopt-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint or state_dict that cannot be loaded, and why."""


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.dtype) or (value is not None and dtypes.is_supported(value)
                                       and not isinstance(value, str)):
        return dtypes.dtype_name(value)
    return value


def save(state_dict: dict, path) -> None:
    """Write ``state_dict`` (from ``Optimizer.state_dict()``) to ``path`` atomically."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    index = []
    steps = {}
    for name, st in state_dict["state"].items():
        steps[name] = int(st["step"])
        for key, value in st.items():
            if key == "step":
                continue
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
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path) -> dict:
    """Read a checkpoint written by :func:`save` back into a state_dict.

    Raises :class:`CheckpointError` naming the file and the problem for anything
    that is not an intact adaopt checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = set(npz.files)
            if "__meta__" not in files:
                raise CheckpointError(f"{path} is not an adaopt checkpoint (no __meta__ entry)")
            meta = json.loads(npz["__meta__"].tobytes().decode())
            fmt = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            if fmt != FORMAT:
                raise CheckpointError(f"{path} is not an adaopt checkpoint (format {fmt!r})")
            if meta.get("version") != VERSION:
                raise CheckpointError(f"{path} has checkpoint version {meta.get('version')!r}; "
                                      f"this adaopt reads version {VERSION}")
            for n, v in meta["steps"].items():
                if type(v) is not int or v < 0:
                    raise CheckpointError(f"{path}: parameter {n!r} has step={v!r}; "
                                          "steps must be integers >= 0")
            state = {name: {"step": step} for name, step in meta["steps"].items()}
            for item in meta["arrays"]:
                if item["entry"] not in files:
                    raise CheckpointError(f"{path} is missing array {item['entry']} "
                                          f"({item['param']}.{item['key']})")
                arr = npz[item["entry"]]
                if item["dtype"] == "bfloat16":
                    arr = arr.view(dtypes.as_dtype("bfloat16"))
                elif arr.dtype.name != item["dtype"]:
                    raise CheckpointError(f"{path}: array {item['param']}.{item['key']} has dtype "
                                          f"{arr.dtype.name}, the index says {item['dtype']}")
                state.setdefault(item["param"], {"step": 0})[item["key"]] = arr
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, KeyError, TypeError, AttributeError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path} is not a readable adaopt checkpoint: {exc}") from exc
    return {
        "optimizer": meta.get("optimizer"),
        "conventions": meta.get("conventions"),
        "state": state,
        "param_groups": meta["param_groups"],
    }
