"""Logs that are one document, not a line a step: reading a whole JSON file within limits,
and turning a tool's records (dicts that name their step) into a reader's columns.

A tool's records may share a step (Hugging Face logs the training and the eval entry of a
step apart, TensorBoard keeps one series a tag): records of one step become one row, a
later value of a column replacing an earlier one. Steps must not go back.
"""

from __future__ import annotations

import json
import os
from array import array

from . import checks
from .checks import _BOM, LogError, _check_name, _pad, _shown, _step

#: The largest whole-document log read (a trainer_state.json takes ~150 bytes a record: 1.7M records).
MAX_DOCUMENT_BYTES = 1 << 28


def load(path, fh, what: str):
    """The JSON value of a whole file, ``what`` saying the format it was taken for; a
    LogError naming the line and column of what cannot be read."""
    try:
        size = os.fstat(fh.fileno()).st_size
    except (OSError, AttributeError, ValueError):  # not a file on disk: the read below stops at the limit
        size = 0
    raw = fh.read(MAX_DOCUMENT_BYTES + 1) if size <= MAX_DOCUMENT_BYTES else b""
    if size > MAX_DOCUMENT_BYTES or len(raw) > MAX_DOCUMENT_BYTES:
        raise LogError(f"{path}: more than {MAX_DOCUMENT_BYTES} bytes; a {what} is read whole, "
                       f"and at most {MAX_DOCUMENT_BYTES} bytes are read")
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LogError(f"{path}: not UTF-8 text (byte {exc.start + 1}); a {what} is JSON text") from None
    try:
        return json.loads(text, parse_int=checks._checked(int), parse_float=checks._checked(float))
    except checks._TooLong as exc:
        raise LogError(f"{path}: a number of {exc.args[0]} characters; at most {checks.MAX_CELL} "
                       "are allowed") from None
    except json.JSONDecodeError as exc:
        raise LogError(f"{path}: line {exc.lineno}, column {exc.colno}: not JSON ({exc.msg}); "
                       f"it was read as a {what}") from None
    except (RecursionError, ValueError) as exc:
        raise LogError(f"{path}: not JSON that can be read ({type(exc).__name__}); "
                       f"it was read as a {what}") from None


def columns_of(path, records, where: str):
    """``(steps, columns)`` (as a reader returns them) of ``records``: ``(label, step, {name:
    value})`` in order, ``label`` naming a record in messages (``log_history[3]``). Values
    that are not numbers (a run name, a list) are left out; a step that goes back is refused."""
    steps = array("q")
    columns: dict = {}
    previous = -1
    for label, raw_step, values in records:
        try:
            step = _step(raw_step, path, 0)
        except LogError as exc:  # said of a record, not a line
            raise LogError(str(exc).replace("line 0", f"{where} {label}", 1)) from None
        if step < previous:
            raise LogError(f"{path}: {where} {label}: step {step} comes after step {previous}; "
                           "steps must not go back")
        if step > previous:
            steps.append(step)
            previous = step
        row = len(steps)
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            col = columns.get(name)
            if col is None:
                _check_name(str(name), path, f"{where} {label}", len(columns) + 1)
                col = columns[name] = (array("d"), bytearray())
            vals, present = col
            _pad(vals, present, row - 1)
            try:
                number = float(value)
            except OverflowError:
                raise LogError(f"{path}: {where} {label}, {_shown(name)}: {_shown(value)} is outside the "
                               "float range (about 1.8e308)") from None
            if len(vals) == row:  # a later record of the same step: its value replaces the earlier one
                vals[row - 1], present[row - 1] = number, 1
            else:
                vals.append(number)
                present.append(1)
    return steps, columns
