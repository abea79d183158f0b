"""The JSON Lines reader: one JSON object a step, ``{"step": 1, "loss": 0.5, ...}``, and
optionally a ``{"meta": {...}}`` line."""

from __future__ import annotations

from array import array
from pathlib import Path

from . import checks
from .columns import STEP, find
from .checks import LogError, _check_name, _json, _lines, _meta, _not_after, _number, _pad, _shown, _step


def read(path: Path, fh, *, step=None):
    """``(meta, steps, columns)`` of a JSON Lines log (see :mod:`adaopt.diagnostics.logs`).
    A key missing from a line, or ``null``, is "not measured" on that step. The step is the
    key ``step`` names, else the first alias of STEP the first row has (else ``step``)."""
    meta = {}
    steps = array("q")
    columns: dict = {}  # name -> (values, present), filled up to the row before they were last written
    previous = -1
    key = None
    for line, text in _lines(path, fh):
        if not text or text.isspace():
            continue
        try:
            obj = _json(text, path, line)
        except LogError as exc:
            if text.endswith("\n"):
                raise
            checks.cut_off(path, line, exc)  # the last line, cut off mid-write
            break
        if not isinstance(obj, dict):
            raise LogError(f"{path}: line {line}: a JSON object was expected, got {type(obj).__name__}")
        if len(obj) == 1 and "meta" in obj:
            meta = _meta(obj["meta"], path, line)
            continue
        if key is None:
            key = find(list(obj), STEP, step, what="step", option="--step", path=path) or "step"
        step = _step(obj.get(key), path, line)
        if step <= previous:
            raise _not_after(step, previous, path, line)
        previous = step
        row = len(steps)
        steps.append(step)
        for name, value in obj.items():
            if value is None or name == key:
                continue
            col = columns.get(name)
            if col is None:
                _check_name(name, path, line, len(columns) + 1)
                col = columns[name] = (array("d"), bytearray())
            values, present = col
            if len(values) < row:
                _pad(values, present, row)
            if type(value) is float:
                values.append(value)
            elif type(value) is int:
                try:
                    values.append(float(value))
                except OverflowError:
                    raise LogError(f"{path}: line {line}, column {_shown(name)}: {_shown(value)} is outside the "
                                   "float range (about 1.8e308)") from None
            else:
                values.append(_number(value, path, line, name))
            present.append(1)
    return meta, steps, columns
