"""The schema of a checkpoint's ``__meta__`` index, checked before any array is read.

:func:`check_meta` takes the parsed JSON (:func:`adaopt.checkpoint._npz.read_meta`) and
checks it in named steps: the format and version, the parameter groups'
hyperparameters, the steps, and the array records. Every problem is a
:class:`~adaopt.checkpoint.CheckpointError` naming the file and the ``__meta__`` entry.
"""

from __future__ import annotations

from .. import dtypes
from ._format import FORMAT, VERSION, CheckpointError, clip

_SCALARS = (bool, int, float, str, type(None))
_MAX_LIST = 64  # a hyperparameter that is a list (betas) holds a few numbers
_FIELDS = ("entry", "param", "key", "dtype")


def _bad(path, entry, problem):
    raise CheckpointError(f"{path}: __meta__ entry {entry} {problem}")


def check_meta(meta, path) -> list:
    """Check ``__meta__``'s structure; return its array index. Every problem names the entry."""
    _check_top(meta, path)
    _check_groups(meta["param_groups"], path)
    _check_steps(meta["steps"], path)
    return _check_index(meta["arrays"], meta["steps"], path)


def _check_top(meta, path) -> None:
    """An object of this format and version, with every key the reader needs."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not an adaopt checkpoint (__meta__ is a JSON "
                              f"{type(meta).__name__}, not an object)")
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise CheckpointError(f"{path} is not an adaopt checkpoint (format {clip(repr(fmt), 80)})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {clip(repr(meta.get('version')), 80)}; "
                              f"this adaopt reads version {VERSION}")
    for key in ("param_groups", "steps", "arrays"):
        if key not in meta:
            _bad(path, repr(key), "is missing")
    for key in ("optimizer", "conventions"):
        if not isinstance(meta.get(key), (str, type(None))):
            _bad(path, repr(key), f"is {clip(repr(meta[key]), 80)}; a string is needed")


def _check_groups(groups, path) -> None:
    """A list of groups, each with its parameters' names and JSON-scalar hyperparameters."""
    if not isinstance(groups, list):
        _bad(path, "'param_groups'", f"is a {type(groups).__name__}; a list of groups is needed")
    for gi, group in enumerate(groups):
        entry = f"param_groups[{gi}]"
        if not isinstance(group, dict):
            _bad(path, entry, f"is a {type(group).__name__}; a group is an object")
        names = group.get("params")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            _bad(path, f"{entry}.params", f"is {clip(repr(names), 80)}; a list of parameter names "
                                          "(strings) is needed")
        for key, value in group.items():
            if key == "params":
                continue
            ok = isinstance(value, _SCALARS) or (
                isinstance(value, list) and len(value) <= _MAX_LIST
                and all(isinstance(v, _SCALARS) for v in value))
            if not ok:
                _bad(path, f"{entry}.{key}", f"is {clip(repr(value), 80)}; a hyperparameter is a "
                                             "number, a flag, a string, null or a short list of numbers")


def _check_steps(steps, path) -> None:
    """An object mapping each parameter's name to its step, an integer >= 0."""
    if not isinstance(steps, dict):
        _bad(path, "'steps'", f"is a {type(steps).__name__}; an object of parameter steps is needed")
    for n, v in steps.items():
        if type(v) is not int or v < 0:
            raise CheckpointError(f"{path}: parameter {n!r} has step={clip(repr(v), 80)}; "
                                  "steps must be integers >= 0")


def _check_index(index, steps, path) -> list:
    """A list of array records: each entry and each (parameter, buffer) once, no buffer
    named ``step``, each of a supported dtype and for a parameter that has a step."""
    if not isinstance(index, list):
        _bad(path, "'arrays'", f"is a {type(index).__name__}; a list of array records is needed")
    entries, buffers = set(), set()
    for i, item in enumerate(index):
        entry = f"arrays[{i}]"
        _check_record(item, entry, path)
        if item["entry"] == "__meta__" or item["entry"] in entries:
            _bad(path, entry, f"names the entry {item['entry']!r} "
                              f"{'that holds the index' if item['entry'] == '__meta__' else 'twice'}")
        entries.add(item["entry"])
        if item["key"] == "step":
            _bad(path, f"{entry}.key", "is 'step', which is kept in 'steps', not as an array")
        if (item["param"], item["key"]) in buffers:
            _bad(path, entry, f"stores {item['param']!r}.{item['key']} a second time")
        buffers.add((item["param"], item["key"]))
        if item["dtype"] not in dtypes.STORED:
            _bad(path, f"{entry}.dtype", f"is {clip(repr(item['dtype']), 80)}; one of "
                                         f"{', '.join(dtypes.STORED)} is needed")
        if item["param"] not in steps:
            _bad(path, entry, f"is state of parameter {item['param']!r}, which has no step in 'steps'")
    return index


def _check_record(item, entry, path) -> None:
    """One array record's form: an object holding the four fields, each a string."""
    if not isinstance(item, dict):
        _bad(path, entry, f"is a {type(item).__name__}; an object with entry, param, key and dtype is needed")
    for field in _FIELDS:
        if field not in item:
            _bad(path, entry, f"has no {field!r}")
        if not isinstance(item[field], str):
            _bad(path, f"{entry}.{field}", f"is {clip(repr(item[field]), 80)}; a string is needed")
