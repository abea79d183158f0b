"""What a log may hold, checked the same way by every reader: the limits, LogError, and the
reading of lines, steps, values and the meta object.

What a log may hold (anything else is a :class:`LogError` naming the line and column):
steps are integers from 0 to 2**53 - 1, strictly increasing; values are numbers (``nan``
and ``inf`` included) or empty/``null`` for "not measured"; at most :data:`MAX_COLUMNS`
columns, cells and names of at most :data:`MAX_CELL` characters, lines of at most
:data:`MAX_LINE_BYTES` bytes; a ``meta`` line is a JSON object. The file is read as a
stream: memory grows with the numbers it holds (about 9 bytes a value), not its text.

The readers look the size limits (``MAX_*``) up here each time a log is read
(``checks.MAX_CELL``), so one assignment here changes them for every reader.
"""

from __future__ import annotations

import json
import math
from array import array
from pathlib import Path

from ... import dtypes

#: The most columns a log may have (a wider one is refused: it is not a training log).
MAX_COLUMNS = 10_000
#: The longest cell, column name or JSON number, in characters (a float needs 24).
MAX_CELL = 1_000
#: The longest line, in bytes (read no further: a file without newlines is refused cheaply).
MAX_LINE_BYTES = 1 << 24
#: Steps are below this: every one is exact as a float64 (and fits an int64).
STEP_LIMIT = 2**53
_STEPS_ALLOWED = "an integer from 0 to 2**53 - 1"
_VALUES_ALLOWED = "allowed: a number, nan, inf, or empty (null in JSON) for not measured"
_BOM = b"\xef\xbb\xbf"
_NAN = array("d", [math.nan])


class LogError(ValueError):
    """A log file that cannot be read: the message names the line and the column."""


class LogWarning(UserWarning):
    """Something of a log that was left out, and why (a last line cut off mid-write)."""


def cut_off(path: Path, line: int, exc: LogError | str) -> None:
    """Warn that the last line, which has no end of line and cannot be read (``exc``, the error
    reading it), or reads as a cut-off line (``exc``, a sentence saying why), is left out: a run
    still writing its log, or killed while it wrote, leaves such a line, and those are the runs
    one diagnoses. Any other bad line is refused: it says the log is not what it claims."""
    import warnings

    if isinstance(exc, LogError):
        why = "cannot be read (" + str(exc).split(f"line {line}", 1)[-1].lstrip(":, ") + ")"
    else:
        why = exc
    warnings.warn(f"{path}: line {line}, the last, has no end of line and {why}: left out, "
                  "as a line cut off mid-write", LogWarning, stacklevel=_outside_adaopt())


def _outside_adaopt() -> int:
    """The stacklevel of the first caller outside adaopt (the readers nest differently deep)."""
    import sys

    package = str(Path(__file__).resolve().parents[2])
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _shown(value) -> str:
    """A value for a message: its repr, cut short; containers by their kind only."""
    if isinstance(value, (list, dict)):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _lines(path: Path, fh):
    """``(line number, text)`` of every line, decoded; a BOM is skipped, and a line longer
    than MAX_LINE_BYTES is refused before more of it is read."""
    limit = MAX_LINE_BYTES
    readline = fh.readline
    number = 0
    while True:
        raw = readline(limit + 1)
        if not raw:
            return
        number += 1
        if len(raw) > limit and not (len(raw) == limit + 1 and raw.endswith(b"\n")):
            raise LogError(f"{path}: line {number} is longer than {limit} bytes; "
                           f"a log's lines are at most {limit} bytes")
        if number == 1:
            if raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise LogError(f"{path}: line 1: the file is UTF-16 text (Excel's \"Unicode Text\"); "
                               "a log is UTF-8: save it as \"CSV UTF-8\"")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LogError(f"{path}: line {number}: not UTF-8 text (byte {raw[exc.start]:#04x} at byte "
                           f"{exc.start + 1} of the line); a log is CSV or JSON Lines text") from None
        yield number, text


def _pad(values: array, present: bytearray, n: int) -> None:
    """Fill a column up to ``n`` rows with "not measured"."""
    gap = n - len(values)
    if gap > 0:
        values.extend(_NAN * gap)
        present.extend(bytes(gap))


def _number(value, path, line, column) -> float:
    """A JSON value or a CSV cell's text as a float; a LogError saying what is wrong."""
    where = f"{path}: line {line}, column {_shown(column)}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LogError(f"{where}: {_shown(value)} is not a number; {_VALUES_ALLOWED}")
    if isinstance(value, str) and len(value) > MAX_CELL:
        raise LogError(f"{where}: a value of {len(value)} characters; at most {MAX_CELL} are allowed")
    try:
        return float(value)
    except OverflowError:
        raise LogError(f"{where}: {_shown(value)} is outside the float range (about 1.8e308)") from None
    except ValueError:
        raise LogError(f"{where}: {_shown(value)} is not a number; {_VALUES_ALLOWED}") from None


def _step(value, path, line) -> int:
    """A step: an integer from 0 to 2**53 - 1, given as a number or its text (``12``, ``12.0``, ``1e3``)."""
    where = f"{path}: line {line}, column 'step'"
    if value is None or value == "" or (isinstance(value, str) and not value.strip()):
        raise LogError(f"{where}: missing; a step is {_STEPS_ALLOWED}")
    if isinstance(value, int) and not isinstance(value, bool):
        step = value
    else:
        if isinstance(value, str):
            try:
                step = int(value)
            except ValueError:
                step = None
        else:
            step = None
        if step is None:
            number = _number(value, path, line, "step")
            if not number.is_integer():
                raise LogError(f"{where}: {_shown(value)} is not a step number; a step is {_STEPS_ALLOWED}")
            step = int(number)
    if not 0 <= step < STEP_LIMIT:
        raise LogError(f"{where}: {_shown(value)} is not a step number; a step is {_STEPS_ALLOWED}")
    return step


def _not_after(step, previous, path, line) -> LogError:
    return LogError(f"{path}: line {line}, column 'step': {step} does not come after {previous}; "
                    "steps must increase")


def _meta(obj, path, line, where="the meta line") -> dict:
    """The meta object, with the entries the diagnosis reads checked."""
    if not isinstance(obj, dict):
        raise LogError(f"{path}: line {line}: {where} must hold a JSON object ({{\"lr\": 0.001, ...}}), "
                       f"got {type(obj).__name__}")
    at = f"{path}: line {line}: meta"

    def number(key):
        v = obj.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise LogError(f"{at} {key!r} is {_shown(v)}; allowed: a number (or null)")
        if isinstance(v, int):
            try:
                float(v)
            except OverflowError:
                raise LogError(f"{at} {key!r} is outside the float range") from None

    for key in ("lr", "eps", "weight_decay", "alpha", "rho", "momentum"):
        number(key)
    betas = obj.get("betas")
    if betas is not None and not (isinstance(betas, list) and len(betas) == 2
                                  and all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                          and abs(b) < 1e308 for b in betas)):
        raise LogError(f"{at} 'betas' is {_shown(betas)}; allowed: a list of two numbers (or null)")
    if obj.get("optimizer") is not None and not isinstance(obj["optimizer"], str):
        raise LogError(f"{at} 'optimizer' is {_shown(obj['optimizer'])}; allowed: a name (or null)")
    for key in ("dtype", "state_dtype"):
        v = obj.get(key)
        if v is not None and v not in dtypes.SUPPORTED:
            raise LogError(f"{at} {key!r} is {_shown(v)}; allowed: {', '.join(dtypes.SUPPORTED)} (or null)")
    return obj


def _json(text, path, line):
    """One JSON value; numbers of more than MAX_CELL characters are refused as they are read."""
    try:
        if len(text) <= MAX_CELL:  # no number in it can be too long: the fast, hook-free parse
            return json.loads(text)
        return json.loads(text, parse_int=_checked(int), parse_float=_checked(float))
    except _TooLong as exc:
        raise LogError(f"{path}: line {line}: a number of {exc.args[0]} characters; "
                       f"at most {MAX_CELL} are allowed") from None
    except json.JSONDecodeError as exc:
        raise LogError(f"{path}: line {line}: not JSON ({exc.msg}, character {exc.pos + 1})") from None
    except RecursionError:
        raise LogError(f"{path}: line {line}: JSON nested too deeply; a log line is an object of "
                       "numbers (meta may hold lists)") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise LogError(f"{path}: line {line}: not JSON that can be read ({exc})") from None


class _TooLong(Exception):
    pass


def _checked(convert):
    def parse(text):
        if len(text) > MAX_CELL:
            raise _TooLong(len(text))
        return convert(text)
    return parse


def _check_name(name, path, line, count):
    """A column's name is at most MAX_CELL characters, and ``count`` columns at most MAX_COLUMNS."""
    if len(name) > MAX_CELL:
        raise LogError(f"{path}: line {line}: a column name of {len(name)} characters; "
                       f"at most {MAX_CELL} are allowed")
    if count > MAX_COLUMNS:
        raise LogError(f"{path}: line {line}: more than {MAX_COLUMNS} columns; at most {MAX_COLUMNS} are read")
